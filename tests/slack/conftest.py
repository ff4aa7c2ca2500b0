"""Fixtures for the Slack connector tests: the local Slack server with a few users and
channels (the helpers live in slackkit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slackkit import ALICE, BOB, LOBBY, OTHER, PRIVATE, SlackServer, slack_server


@pytest.fixture
async def slack() -> AsyncIterator[SlackServer]:
    async with slack_server() as server:
        server.add_user(ALICE, "alice", display_name="Alice A.", real_name="Alice Example")
        server.add_user(BOB, "bob", real_name="Bob Builder")
        server.add_channel("C0GENERAL", "general")
        server.add_channel(OTHER, "other", bot_member=False)
        server.add_channel(LOBBY, "acme-project")
        server.add_channel(PRIVATE, "secret", is_private=True)
        yield server
