"""What every connector must show the same way, written once.

A connector's tests describe one room on their platform as a :class:`PeerRoom`, backed by
their own test server (a wire-level Slack or Telegram server, a real IMAP/SMTP server),
and run every scenario in :data:`ALL` through :func:`harness`: the real ``roomlink``
process linking that room with an API room of another party. A scenario asserts what a
user of either room would notice: the message arrives, with its author's name, once;
replies, edits and deletes land on the right message even after a restart; hostile text
stays text; a ``kill -9`` between the platform handing a message over and the bridge
storing it loses nothing and doubles nothing.

Use::

    @pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
    async def test_conformance(scenario, tmp_path, server):
        async with conformance.harness(tmp_path, MyPeerRoom(server)) as h:
            await scenario(h)
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from rlkit import Daemon, Room, Stream, export, free_port, write_config

PEER_PARTY, API_PARTY = "agency", "acme"
PEER_CONNECTOR, API_CONNECTOR, API_ROOM, PIPE = "peer", "web", "lobby", "p"

# Each must reach the platform as the same visible text, and must not act: no ping, no
# markup of the platform's own, no extra mail header.
HOSTILE_TEXTS = (
    "<!channel> <!here> <!everyone> <@U0000001> @everyone @here",
    "<b>bold?</b> <script>alert(1)</script> &amp; &lt;tag&gt; <a href='x'>link</a>",
    "first line\r\nBcc: victim@example.com\r\nSubject: injected",
)
HOSTILE_AUTHOR = "mallory\r\nBcc: victim@example.com <!channel> <b>boss</b>"


@dataclass
class Post:
    """One message the bridge posted on the platform, as the platform shows it now."""

    native_id: str
    text: str  # visible text, author prefix removed, platform markup decoded
    author: str  # the author name a user sees
    reply_to: str | None = None  # native id of the message it answers / its thread root
    edits: list[str] = field(default_factory=list)  # earlier texts, oldest first
    deleted: bool = False
    raw: Any = None  # the platform's own payload, for assert_inert


class PeerRoom(Protocol):
    """One room on the platform as its users see it, backed by the test server."""

    room: str  # the room as written in the roomlink config
    connector_type: str
    can_edit: bool  # platform users can edit, and the bridge sees it
    can_delete: bool  # platform users can delete, and the bridge sees it
    shows_edits: bool  # the bridge can edit its own posts there
    shows_deletes: bool  # the bridge can delete its own posts there

    def connector_options(self) -> dict[str, Any]: ...
    async def say(self, text: str, author: str) -> str: ...
    async def reply(self, to_native: str, text: str, author: str) -> str: ...
    async def edit(self, native_id: str, text: str) -> None: ...
    async def delete(self, native_id: str) -> None: ...
    def posts(self) -> list[Post]: ...
    def assert_inert(self, post: Post, hostile: str) -> None: ...
    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None: ...


@dataclass
class Harness:
    config: Path
    daemon: Daemon
    api: Room
    stream: Stream
    peer: PeerRoom

    async def restart(self) -> None:
        """A clean stop (SIGTERM) and a new process: only the stores remember."""
        assert self.daemon.terminate() == 0, self.daemon.log()[-3000:]
        await self.daemon.start()

    async def crash_restart(self) -> None:
        self.daemon.kill()
        await self.daemon.start()

    @contextlib.contextmanager
    def store_locked(self, party: str) -> Iterator[None]:
        """Hold ``party``'s SQLite store's write lock: no message can be recorded meanwhile."""
        db = sqlite3.connect(self.config.parent / f"{party}.db", isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
        finally:
            db.close()  # rolls back, releasing the lock

    async def frames(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The first ``count`` frames the API room received (kinds message, edit, delete)."""
        return (await self.stream.wait_for(count, timeout))[:count]

    async def posts(self, count: int, timeout: float = 30) -> list[Post]:
        """The first ``count`` posts the bridge made in the platform room."""
        await wait_until(lambda: len(self.peer.posts()) >= count, timeout,
                         lambda: f"{len(self.peer.posts())} of {count} posts on the platform")
        return self.peer.posts()[:count]

    def records(self, party: str) -> list[dict[str, Any]]:
        return export(self.config, party, PIPE)


async def wait_until(check: Callable[[], bool], timeout: float = 30,
                     what: Callable[[], str] = lambda: "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what()}")
        await asyncio.sleep(0.05)


def _words(text: str) -> str:
    return " ".join(text.split())


@contextlib.asynccontextmanager
async def harness(tmp_path: Path, peer: PeerRoom, env: dict[str, str] | None = None
                  ) -> AsyncIterator[Harness]:
    port = free_port()
    config = write_config(tmp_path / "roomlink.yaml", {
        "parties": {p: {"store": f"sqlite:///{tmp_path / p}.db"}
                    for p in (PEER_PARTY, API_PARTY)},
        "connectors": {
            PEER_CONNECTOR: {"party": PEER_PARTY, "type": peer.connector_type,
                             **peer.connector_options()},
            API_CONNECTOR: {"party": API_PARTY, "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {PIPE: {"rooms": [{"connector": PEER_CONNECTOR, "room": peer.room},
                                   {"connector": API_CONNECTOR, "room": API_ROOM}]}},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0},
    })
    daemon = Daemon(config, [port], env)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Room(http, port, API_ROOM)
            async with api.stream() as stream:
                yield Harness(config, daemon, api, stream, peer)
    finally:
        daemon.cleanup()


# -- scenarios ---------------------------------------------------------------------------

async def relay_both_ways(h: Harness) -> None:
    """A message goes each way with its author's name, once; neither side hears its echo."""
    await h.peer.say("hello from the platform", "Alice Example")
    [frame] = await h.frames(1)
    assert frame["kind"] == "message"
    assert _words(frame["text"]) == "hello from the platform"
    assert frame["author"]["name"] == "Alice Example"
    assert frame["author"]["party"] == PEER_PARTY
    assert frame["author"]["platform"] == h.peer.connector_type
    await h.api.post("hello from the web", "bob")
    [post] = await h.posts(1)
    assert "hello from the web" in _words(post.text)
    assert "bob" in post.author
    await asyncio.sleep(1.5)  # an echo, or a second copy, would have come by now
    assert len(h.stream.frames) == 1, h.stream.frames
    assert len(h.peer.posts()) == 1, h.peer.posts()
    for party in (PEER_PARTY, API_PARTY):  # every party's record holds both, once
        assert [m["text"] for m in h.records(party)] == ["hello from the platform",
                                                         "hello from the web"]


async def replies_across_restart(h: Harness) -> None:
    """Replies either way point at the right message, with only the stores to remember."""
    question = await h.peer.say("question from the platform", "Alice")
    [asked] = await h.frames(1)
    statement = (await h.api.post("statement from the web", "bob"))["id"]
    [stated] = await h.posts(1)
    await h.restart()
    await h.api.post("answer from the web", "bob", reply_to=asked["id"])
    _, answer = await h.posts(2)
    assert "answer from the web" in _words(answer.text)
    assert answer.reply_to == question
    await h.peer.reply(stated.native_id, "follow-up from the platform", "Alice")
    _, follow_up = await h.frames(2)
    assert _words(follow_up["text"]) == "follow-up from the platform"
    assert follow_up["reply_to"] == statement


async def edits_and_deletes(h: Harness) -> None:
    """Edits and deletes reach the other side where the platform has them, across a restart."""
    seen = 0
    if h.peer.can_edit or h.peer.can_delete:
        native = await h.peer.say("platform draft", "Alice")
        [original] = await h.frames(1)
        seen = 1
        await h.restart()
        if h.peer.can_edit:
            await h.peer.edit(native, "platform final")
            seen += 1
            edit = (await h.frames(seen))[-1]
            assert (edit["kind"], edit["target"]) == ("edit", original["id"])
            assert _words(edit["text"]) == "platform final"
        if h.peer.can_delete:
            await h.peer.delete(native)
            seen += 1
            delete = (await h.frames(seen))[-1]
            assert (delete["kind"], delete["target"]) == ("delete", original["id"])
    said = (await h.api.post("web draft", "bob"))["id"]
    [post] = await h.posts(1)
    await h.restart()
    await h.api.edit(said, "web final", "bob")
    if h.peer.shows_edits:
        await wait_until(lambda: "web final" in _words(post_now(h, post).text), 30,
                         lambda: f"the edit of {post_now(h, post)}")
        assert len(h.peer.posts()) == 1  # edited in place, not posted again
    else:  # the platform cannot edit: the new text comes as a new message, marked
        _, again = await h.posts(2)
        assert "web final" in _words(again.text)
    await h.api.delete(said, "bob")
    if h.peer.shows_deletes:
        await wait_until(lambda: post_now(h, post).deleted, 30, lambda: "the delete")
    await asyncio.sleep(1.0)
    assert len(h.stream.frames) == seen  # the API room hears nothing of its own changes


def post_now(h: Harness, post: Post) -> Post:
    """The platform's current view of ``post``."""
    return next(p for p in h.peer.posts() if p.native_id == post.native_id)


async def hostile_text_is_inert(h: Harness) -> None:
    """Hostile text and author names arrive as the same visible text and do nothing."""
    for text in HOSTILE_TEXTS:
        await h.api.post(text, HOSTILE_AUTHOR)
    posts = await h.posts(len(HOSTILE_TEXTS))
    for post, text in zip(posts, HOSTILE_TEXTS, strict=True):
        assert _words(text) in _words(post.text), (text, post.text)
        h.peer.assert_inert(post, text)
        h.peer.assert_inert(post, HOSTILE_AUTHOR)


async def kill_between_receive_and_store(h: Harness) -> None:
    """kill -9 after the platform handed a message over and before the bridge could store
    it: it arrives after the restart, and only once.

    acme's store is held locked, so the message surely is not stored when the process
    dies; a connector that acknowledged it on receipt (Slack ack, Telegram offset, IMAP
    UID) would have lost it.
    """
    with h.store_locked(API_PARTY):
        native = await h.peer.say("said just before a crash", "Alice")
        await h.peer.wait_handed_over(native)
        await asyncio.sleep(1.0)  # time enough to acknowledge it, were that the bug
        h.daemon.kill()
    assert not h.stream.frames
    await h.daemon.start()
    await h.frames(1, timeout=60)
    await asyncio.sleep(2.0)  # the platform's re-delivery, if any, has come by now
    # a crash may repeat the one copy in flight to a room, but only with the same id
    ids = {f["id"] for f in h.stream.frames if f["text"] == "said just before a crash"}
    assert len(ids) == 1, h.stream.frames
    for party in (PEER_PARTY, API_PARTY):
        assert [m["text"] for m in h.records(party)] == ["said just before a crash"]


Scenario = Callable[[Harness], Awaitable[None]]
ALL: tuple[Scenario, ...] = (
    relay_both_ways,
    replies_across_restart,
    edits_and_deletes,
    hostile_text_is_inert,
    kill_between_receive_and_store,
)
