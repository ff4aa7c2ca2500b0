"""Logs never show a secret from the config, not even inside a traceback."""

from __future__ import annotations

import logging

import pytest

from roomlink.admin.logs import setup_logging

SECRET = "xoxb-very-secret-token"


def test_secrets_are_redacted_in_messages_and_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", {SECRET, "pw"})
    log = logging.getLogger("roomlink.test")
    log.info("connecting with %s", SECRET)
    try:
        raise RuntimeError(f"auth failed for token {SECRET}")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err.count("***") >= 2
    assert "RuntimeError: auth failed for token ***" in err
