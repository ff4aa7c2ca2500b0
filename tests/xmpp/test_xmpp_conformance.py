"""The connector conformance kit (tests/conformance.py) in a room of a real Prosody."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from xmppkit import BRIDGE_NICK, MUC, Person, Prosody, Seen, download

import conformance
from filekit import PeerFile

ROOM = f"project@{MUC}"
PREFIX = re.compile(r"<(.+?)> ", re.DOTALL)


class XmppRoom(conformance.PeerRoom):
    """A MUC on the test server as its occupants see it; a watcher keeps what it hears."""

    room = ROOM
    connector_type = "xmpp"
    can_edit = can_delete = shows_edits = shows_deletes = True
    no_files = None  # files go through the server's upload service (XEP-0363, XEP-0066)

    def __init__(self, server: Prosody) -> None:
        self.server = server
        self.people: dict[str, Person] = {}
        self.watcher: Person | None = None
        self.said: dict[str, tuple[str, Seen]] = {}  # stanza id -> (author, message)
        self.with_post: dict[str, list[str]] = {}  # a post's id -> the files' URLs after it
        self.bridge_joins = 0  # how often the watcher saw the bridge enter the room
        self._joins_known = 0
        self._in_room: set[str] = set()

    def connector_options(self) -> dict[str, Any]:
        return self.server.bridge_options()

    async def person(self, nick: str) -> Person:
        if nick not in self.people:
            self.people[nick] = await Person.join(self.server, ROOM, nick)
        return self.people[nick]

    async def watch(self) -> None:
        self.watcher = await self.person("watcher")
        self.watcher.add_event_handler("groupchat_presence", self._on_presence)

    def _on_presence(self, pres: Any) -> None:
        if pres["from"].resource == BRIDGE_NICK and pres["type"] != "unavailable":
            if BRIDGE_NICK not in self._in_room:
                self.bridge_joins += 1
            self._in_room.add(BRIDGE_NICK)
        elif pres["from"].resource == BRIDGE_NICK:
            self._in_room.discard(BRIDGE_NICK)

    async def wait_ready(self) -> None:
        """The bridge (re)started is in the room once the watcher saw it enter again."""
        await conformance.wait_until(lambda: self.bridge_joins > self._joins_known, 30,
                                     lambda: "the bridge joining the room")
        self._joins_known = self.bridge_joins

    async def close(self) -> None:
        await asyncio.gather(*(p.leave() for p in self.people.values()))

    async def say(self, text: str, author: str) -> str:
        seen = await (await self.person(author)).say(text)
        assert seen.stanza_id
        self.said[seen.stanza_id] = (author, seen)
        return seen.stanza_id

    async def reply(self, to_native: str, text: str, author: str) -> str:
        seen = await (await self.person(author)).reply(to_native, text)
        assert seen.stanza_id
        self.said[seen.stanza_id] = (author, seen)
        return seen.stanza_id

    async def edit(self, native_id: str, text: str) -> None:
        author, seen = self.said[native_id]
        await (await self.person(author)).correct(seen.msg_id, text)

    async def delete(self, native_id: str) -> None:
        author, _ = self.said[native_id]
        await (await self.person(author)).retract(native_id)

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        person = await self.person(author)
        urls = [await person.upload(f.name, f.type, f.data) for f in files]
        seen = await person.share(text, urls)
        assert seen.stanza_id
        self.said[seen.stanza_id] = (author, seen)
        return seen.stanza_id

    async def files_of(self, post: conformance.Post) -> list[PeerFile]:
        # each file is a message of its own after the text: read once none is new
        count, still = -1, 0.0
        while still < 2.0:
            self.posts()
            now = len(self.with_post.get(post.native_id, []))
            count, still = now, (still + 0.2 if now == count else 0.0)
            await asyncio.sleep(0.2)
        return [await download(url) for url in self.with_post.get(post.native_id, [])]

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        """The room sends a message to every occupant at once, the bridge included: once
        the sender has its echo, the bridge's copy is on its socket too."""
        await asyncio.sleep(0.3)

    def posts(self) -> list[conformance.Post]:
        assert self.watcher is not None
        seen = [s for s in self.watcher.seen if s.nick == BRIDGE_NICK and not s.delayed]
        posts: list[conformance.Post] = []
        self.with_post = {}
        for s in seen:
            if s.replaces or s.retracts:
                continue
            if s.is_file and posts:
                self.with_post.setdefault(posts[-1].native_id, []).extend(s.oob)
                continue
            edits = [c.body for c in seen if c.replaces == s.msg_id]
            match = PREFIX.match(edits[-1] if edits else s.body)
            body = edits[-1] if edits else s.body
            posts.append(conformance.Post(
                native_id=s.stanza_id or s.msg_id, text=body[match.end():] if match else body,
                author=match.group(1) if match else "", reply_to=s.reply_to,
                edits=[s.body, *edits[:-1]] if edits else [],
                deleted=any(c.retracts == s.stanza_id for c in seen), raw=s))
        return posts

    def assert_inert(self, post: conformance.Post, hostile: str) -> None:
        raw: Seen = post.raw
        # the body is character data: nothing in the text became an element of the stanza
        # (no XHTML-IM, no mention reference), and the name never starts a line of its own
        for element in ("<html", "<reference", "<x ", "<a ", "<b>", "<script"):
            assert element not in raw.xml.split("<body>")[0], raw.xml
        assert " ".join(hostile.split()) in " ".join(raw.body.split())
        assert "\n" not in post.author and "\r" not in post.author
        assert raw.body.startswith("<"), raw.body


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path,
                           prosody: Prosody) -> None:
    peer = XmppRoom(prosody)
    await peer.watch()
    try:
        async with conformance.harness(tmp_path, peer) as h:
            await scenario(h)
    finally:
        await peer.close()

