"""The connector conformance kit (tests/conformance.py) on a real ngIRCd.

The room is a channel; its people are real IRC clients, one connection per author, and a
watcher who joined first reads what the bridge says there. IRC has no message ids, no
replies, no edits or deletes and no history: the room declares each, and the kit checks
what the bridge does instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from irckit import BOT, IrcUser, Line, Ngircd, wait_until

import conformance
from conformance import Post

CHANNEL = "#lobby"
ZWJ = "\u200d"  # the bridge puts one in a relayed nick, so that it pings nobody
SAID_BY = re.compile(r"<(.+?)> (.*)", re.DOTALL)  # "<nick> text", the default nick_format


class IrcChannel(conformance.PeerRoom):
    room = CHANNEL
    connector_type = "irc"
    can_edit = can_delete = False  # IRC users cannot change a line once said
    shows_edits = shows_deletes = False  # nor can the bridge: an edit comes as a new line
    no_replies = "IRC has no replies: a line answers nothing the client knows of"
    no_redelivery = ("IRC keeps no history and never hands a line over again: a line the "
                     "bridge received but had stored in no store when it died is gone "
                     "(one some stores held is given to the others at the restart), as "
                     "is a line said while it was down")
    no_files = "IRC carries no files: each comes as a [file: NAME (TYPE, SIZE)] line"

    def __init__(self, server: Ngircd, watcher: IrcUser) -> None:
        self.server = server
        self.watcher = watcher  # in the channel before the bridge, reads what it says
        self.people: dict[str, IrcUser] = {}

    def connector_options(self) -> dict[str, Any]:
        return {"server": "127.0.0.1", "port": self.server.port, "nick": BOT,
                "line_interval": 0.01, "burst_lines": 50,
                "reconnect_initial": 0.2, "reconnect_max": 2.0}

    def known_as(self, author: str) -> str:
        return author.replace(" ", "_")  # a nick has no spaces

    async def _person(self, author: str) -> IrcUser:
        if author not in self.people:
            user = IrcUser(self.server.port, self.known_as(author))
            await user.connect()
            await user.join(CHANNEL)
            self.people[author] = user
        return self.people[author]

    async def say(self, text: str, author: str) -> str:
        person = await self._person(author)
        person.say(CHANNEL, text)
        # IRC gives a line no id, and a room without replies, edits or deletes needs none
        return f"{person.nick}: {text}"

    async def reply(self, to_native: str, text: str, author: str) -> str:
        return await self.say(text, author)  # there is nothing to point at

    async def edit(self, native_id: str, text: str) -> None:
        raise AssertionError("an IRC line cannot be edited")

    async def delete(self, native_id: str) -> None:
        raise AssertionError("an IRC line cannot be deleted")

    def _bot_here(self) -> bool:
        """Whether the bridge is in the channel now, by the last word the watcher had of
        it (its JOIN, or its QUIT, PART or KICK)."""
        for line in reversed(self.watcher.lines):
            if line.command in ("JOIN", "PART") and line.nick == BOT:
                return line.command == "JOIN"
            if line.command == "QUIT" and line.nick == BOT:
                return False
            if line.command == "KICK" and line.params[1:2] == [BOT]:
                return False
        return False

    async def wait_ready(self) -> None:
        await wait_until(self._bot_here, 30, f"{BOT} in {CHANNEL}")

    def posts(self) -> list[Post]:
        posts = []
        for index, line in enumerate(self.watcher.privmsgs(CHANNEL)):
            said = SAID_BY.fullmatch(line.params[1])
            # a name holding "> " is cut short here: only the hostile one does, and its
            # checks look at the whole line
            author, text = (said.group(1), said.group(2)) if said else ("", line.params[1])
            posts.append(Post(native_id=str(index), text=text,
                              author=author.replace(ZWJ, ""), raw=line))
        return posts

    def assert_inert(self, post: Post, hostile: str) -> None:
        line: Line = post.raw
        # one PRIVMSG to the channel, ending at its one CR LF: no command smuggled in
        assert line.raw.count(b"\r") == 1 and line.raw.count(b"\n") == 1, line.raw
        assert line.raw.endswith(b"\r\n") and b"\x00" not in line.raw, line.raw
        assert (line.nick, line.command, line.params[0]) == (BOT, "PRIVMSG", CHANNEL)
        # no CTCP, and no formatting code or colour the hostile text could have turned on
        assert not any(ord(c) < 32 or ord(c) == 127 for c in line.params[1]), line.params
        # nothing else came from the bridge: no line to a person, no mode, no join
        assert [ln.command for ln in self.watcher.lines if ln.nick == BOT] == [
            "JOIN", *["PRIVMSG"] * len(self.posts())], self.watcher.lines[-5:]
        assert not any(user.privmsgs(user.nick) for user in self.people.values())

    async def close(self) -> None:
        for person in self.people.values():
            await person.close()


@pytest.fixture
async def watcher(ngircd: Ngircd) -> AsyncIterator[IrcUser]:
    user = await IrcUser(ngircd.port, "watcher").connect()
    await user.join(CHANNEL)
    try:
        yield user
    finally:
        await user.close()


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path, ngircd: Ngircd,
                           watcher: IrcUser) -> None:
    channel = IrcChannel(ngircd, watcher)
    try:
        async with conformance.harness(tmp_path, channel) as h:
            await scenario(h)
    finally:
        await channel.close()


async def test_a_line_half_stored_at_a_crash_is_kept_by_every_party_or_none(
        tmp_path: Path, ngircd: Ngircd, watcher: IrcUser) -> None:
    channel = IrcChannel(ngircd, watcher)
    try:
        async with conformance.harness(tmp_path, channel) as h:
            with h.store_locked(conformance.PEER_PARTY):  # acme's store is written first
                await channel.say("said as the bridge died", "Alice")
                await h.stored(conformance.API_PARTY, "said as the bridge died")
                h.daemon.kill()
            await h.start()
            await channel.say("said after the restart", "Alice")
            await h.frames(1)
            await asyncio.sleep(2.0)  # whatever comes, has come
            records = {party: [m["text"] for m in h.records(party)]
                       for party in (conformance.PEER_PARTY, conformance.API_PARTY)}
            assert records[conformance.PEER_PARTY] == records[conformance.API_PARTY], records
            # kept by both: the restart gave agency the line only acme's store held
            assert records[conformance.PEER_PARTY] == [
                "said as the bridge died", "said after the restart"], records
    finally:
        await channel.close()
