"""Fixtures for the XMPP connector tests: a real Prosody per test, stopped by its PID."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from xmppkit import Prosody


@pytest.fixture
async def prosody() -> AsyncIterator[Prosody]:
    server = Prosody()
    await server.start()
    try:
        yield server
    finally:
        server.stop()
