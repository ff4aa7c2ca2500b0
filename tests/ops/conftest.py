"""Fixtures for the operations tests: a real ngIRCd (a platform that can go down and
refuse messages) and IRC users in it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# the IRC test kit (a real ngIRCd, raw IRC users) lives beside the IRC connector's tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "irc"))
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
