"""Fixtures for the email connector tests: a real Dovecot + SMTP server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mailpeer import MailServer


@pytest.fixture
async def mail_server() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    try:
        yield server
    finally:
        if server.tap is not None:
            await server.tap.stop()
        server.stop()
