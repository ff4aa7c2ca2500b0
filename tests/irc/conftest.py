"""Fixtures for the IRC connector tests: a real ngIRCd per test, and IRC users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from irckit import IrcUser, Ngircd, UserFactory


@pytest.fixture
async def ngircd(tmp_path: Path) -> AsyncIterator[Ngircd]:
    server = Ngircd(tmp_path / "ngircd")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def irc_user(ngircd: Ngircd) -> AsyncIterator[UserFactory]:
    """Connect a human to the test server: ``await irc_user("alice", "#room")``."""
    users: list[IrcUser] = []

    async def make(nick: str, *channels: str, port: int | None = None) -> IrcUser:
        user = IrcUser(port or ngircd.port, nick)
        users.append(user)
        await user.connect()
        for channel in channels:
            await user.join(channel)
        return user

    yield make
    for user in users:
        await user.close()
