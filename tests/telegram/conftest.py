"""Fixtures for the Telegram connector tests: the Bot API test server, with one group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tgkit import GROUP, BotApiServer


@pytest.fixture
async def tg() -> AsyncIterator[Any]:
    server = BotApiServer()
    server.add_chat(GROUP, "supergroup", "Acme project")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
