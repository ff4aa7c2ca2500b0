"""What every connector must show the same way, written once.

A connector's tests describe one room on their platform as a :class:`PeerRoom`, backed by
their own test server (a wire-level Slack or Telegram server, a real IMAP/SMTP server, a
real ngIRCd), and run every scenario in :data:`ALL` through :func:`harness`: the real ``roomlink``
process linking that room with an API room of another party. A scenario asserts what a
user of either room would notice: the message arrives, with its author's name, once;
replies, edits and deletes land on the right message even after a restart; hostile text
stays text; a ``kill -9`` between the platform handing a message over and the bridge
storing it loses nothing and doubles nothing.

Every connector runs every scenario. What a platform lacks (edits, replies, re-delivery)
its room declares, with the reason; the scenario then checks what the platform does
instead (an edit arrives as a new message marked "(edited)", a reply as a plain message,
a line IRC never hands over again is lost and nothing is doubled) rather than being left
out.

Use::

    @pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
    async def test_conformance(scenario, tmp_path, server):
        async with conformance.harness(tmp_path, MyPeerRoom(server)) as h:
            await scenario(h)
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from filekit import SAMPLES, PeerFile, clean_name_ok, post_files, received
from rlkit import Daemon, Room, Stream, export, free_port, run_cli, write_config

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


class PeerRoom(ABC):
    """One room on the platform as its users see it, backed by the test server.

    The defaults fit a platform with replies that hands a message over again until the
    bridge acknowledges it (Slack, Telegram, IMAP); a room overrides what its platform
    does otherwise, and says why.
    """

    room: str  # the room as written in the roomlink config
    connector_type: str
    can_edit: bool  # platform users can edit, and the bridge sees it
    can_delete: bool  # platform users can delete, and the bridge sees it
    shows_edits: bool  # the bridge can edit its own posts there
    shows_deletes: bool  # the bridge can delete its own posts there
    # Why the platform has no replies (IRC), or None: a reply then arrives as a plain
    # message, either way.
    no_replies: str | None = None
    # Why a message the bridge received but had not stored when it died can never come
    # back (IRC keeps no history), or None. The crash scenario then shows instead that a
    # stored message survives a kill -9 before its delivery, once, and that what was
    # said while the bridge was down is lost, not half-kept.
    no_redelivery: str | None = None
    # Why the platform carries no files (IRC), or None. Files the bridge relays there
    # then arrive as a "[file: NAME (TYPE, SIZE)]" line each, and its people post none.
    # A room that carries files overrides this and say_with_files and files_of.
    no_files: str | None = "this room's test adapter neither posts nor reads files"
    # Why a message there holds one file at most (Matrix: a file is an event of its own),
    # or None. Its people's files then arrive as one message each, the first with the
    # text as its caption; files relayed there may follow their text as posts of their own
    # (``files_of`` of the text's post gives them).
    files_apart: str | None = None

    @abstractmethod
    def connector_options(self) -> dict[str, Any]: ...
    @abstractmethod
    async def say(self, text: str, author: str) -> str: ...
    @abstractmethod
    async def reply(self, to_native: str, text: str, author: str) -> str: ...
    @abstractmethod
    async def edit(self, native_id: str, text: str) -> None: ...
    @abstractmethod
    async def delete(self, native_id: str) -> None: ...
    @abstractmethod
    def posts(self) -> list[Post]: ...
    @abstractmethod
    def assert_inert(self, post: Post, hostile: str) -> None: ...

    def known_as(self, author: str) -> str:
        """The name the platform gives a person called ``author`` (IRC: a nick, no spaces)."""
        return author

    async def wait_ready(self) -> None:
        """Return once the bridge, just (re)started, can hear the room (IRC: it has joined)."""
        return  # most platforms keep what is said until the bridge is connected

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        """Return once the platform has handed message ``native_id`` to the bridge."""
        raise NotImplementedError(f"{type(self).__name__} cannot tell")

    async def say_unacknowledged(self, text: str, author: str) -> None:
        """Say ``text`` and return once the bridge surely has it; the bridge cannot
        acknowledge it (a store is locked) and is killed next."""
        await self.wait_handed_over(await self.say(text, author))

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        """Post ``text`` with ``files`` as one message, the way the platform's people do."""
        raise NotImplementedError(f"{type(self).__name__}: {self.no_files}")

    async def files_of(self, post: Post) -> list[PeerFile]:
        """The files the bridge posted with ``post``, as the platform's people get them
        (names as the platform shows them, bytes as they download them)."""
        raise NotImplementedError(f"{type(self).__name__}: {self.no_files}")

    async def redeliver(self) -> None:
        """After that crash and a restart: what the platform's users must do themselves to
        hand the unacknowledged message over again (an HTTP client retries its POST).
        Nothing by default: the platform re-delivers by itself."""
        return


@dataclass
class Harness:
    config: Path
    daemon: Daemon
    api: Room
    stream: Stream
    peer: PeerRoom

    async def start(self) -> None:
        await self.daemon.start()
        await self.peer.wait_ready()

    async def restart(self) -> None:
        """A clean stop (SIGTERM) and a new process: only the stores remember."""
        assert self.daemon.terminate() == 0, self.daemon.log()[-3000:]
        await self.start()

    async def crash_restart(self) -> None:
        self.daemon.kill()
        await self.start()

    @contextlib.asynccontextmanager
    async def api_room_down(self) -> AsyncIterator[None]:
        """No client watches the API room meanwhile: what is relayed to it waits in acme's
        outbox (an API room without a stream client is down). Then the client is back."""
        frames = self.stream.frames
        await self.stream.__aexit__(None, None, None)
        await asyncio.sleep(0.3)  # the bridge has seen the client go
        try:
            yield
        finally:
            self.stream = self.api.stream()
            self.stream.frames = frames  # one list of what the room received, throughout
            await self.stream.__aenter__()

    @contextlib.contextmanager
    def store_locked(self, party: str) -> Iterator[None]:
        """Hold ``party``'s SQLite store's write lock: no message can be recorded meanwhile."""
        db = sqlite3.connect(self.config.parent / f"{party}.db", isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
        finally:
            db.close()  # rolls back, releasing the lock

    async def stored(self, party: str, text: str, timeout: float = 30) -> None:
        """Until ``party``'s SQLite store holds a message saying ``text``."""
        db = self.config.parent / f"{party}.db"

        def holds() -> bool:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                return conn.execute("SELECT 1 FROM messages WHERE text = ?",
                                    (text,)).fetchone() is not None

        await wait_until(holds, timeout, lambda: f"{text!r} in {party}'s store")

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

    async def api_files(self, frame: dict[str, Any]) -> list[PeerFile]:
        """The files of a frame the API room received, downloaded as its client would."""
        return await received(self.api.session, self.api.base, frame, self.api.headers)


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
    try:
        async with aiohttp.ClientSession() as http:
            api = Room(http, port, API_ROOM)
            h = Harness(config, daemon, api, api.stream(), peer)
            await h.start()
            await h.stream.__aenter__()
            try:
                yield h
            finally:
                await h.stream.__aexit__(None, None, None)  # the one watching by then
    finally:
        daemon.cleanup()


# -- scenarios ---------------------------------------------------------------------------

async def relay_both_ways(h: Harness) -> None:
    """A message goes each way with its author's name, once; neither side hears its echo."""
    await h.peer.say("hello from the platform", "Alice Example")
    [frame] = await h.frames(1)
    assert frame["kind"] == "message"
    assert _words(frame["text"]) == "hello from the platform"
    assert frame["author"]["name"] == h.peer.known_as("Alice Example")
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
    """Replies either way point at the right message, with only the stores to remember;
    where the platform has no replies, a reply arrives as a plain message, either way."""
    question = await h.peer.say("question from the platform", "Alice")
    [asked] = await h.frames(1)
    statement = (await h.api.post("statement from the web", "bob"))["id"]
    [stated] = await h.posts(1)
    await h.restart()
    await h.api.post("answer from the web", "bob", reply_to=asked["id"])
    _, answer = await h.posts(2)
    assert "answer from the web" in _words(answer.text)
    assert answer.reply_to == (None if h.peer.no_replies else question)
    await h.peer.reply(stated.native_id, "follow-up from the platform", "Alice")
    _, follow_up = await h.frames(2)
    assert _words(follow_up["text"]) == "follow-up from the platform"
    assert follow_up.get("reply_to") == (None if h.peer.no_replies else statement)
    await asyncio.sleep(1.0)  # nothing else comes: no second copy, no stray notice
    assert (len(h.stream.frames), len(h.peer.posts())) == (2, 2)


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
        assert "web final (edited)" in _words(again.text), again
        assert _words(post_now(h, post).text) == _words(post.text)  # the first one stays
    posted = len(h.peer.posts())
    await h.api.delete(said, "bob")
    if h.peer.shows_deletes:
        await wait_until(lambda: post_now(h, post).deleted, 30, lambda: "the delete")
    await asyncio.sleep(1.0)
    assert len(h.stream.frames) == seen  # the API room hears nothing of its own changes
    # a platform that cannot delete hears nothing of it: no notice, no new message
    assert len(h.peer.posts()) == posted, h.peer.posts()[posted:]


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

    A store is held locked, so the message surely is not stored everywhere when the
    process dies; a connector that acknowledged it on receipt (Slack ack, Telegram offset,
    IMAP UID, an HTTP 202) would have lost it. Each party's store is locked in turn: the
    router writes the stores one after the other, so one of the two crashes leaves the
    message in one store only, and the message handed over again must not be doubled
    there. A platform that never hands a message over again (``no_redelivery``) shows the
    rest of the path instead.
    """
    if h.peer.no_redelivery:
        await _kill_between_store_and_delivery(h)
        return
    said = []
    for locked in (API_PARTY, PEER_PARTY):
        text = f"said just before a crash, {locked}'s store locked"
        said.append(text)
        with h.store_locked(locked):
            await h.peer.say_unacknowledged(text, "Alice")
            await asyncio.sleep(1.0)  # time enough to acknowledge it, were that the bug
            h.daemon.kill()
        await h.start()
        await h.peer.redeliver()
        await _api_room_hears(h, text)
    await asyncio.sleep(2.0)  # the platform's re-delivery, if any, has come by now
    # a crash may repeat the one copy in flight to a room, but only with the same id
    for text in said:
        ids = {f["id"] for f in h.stream.frames if f["text"] == text}
        assert len(ids) == 1, h.stream.frames
    for party in (PEER_PARTY, API_PARTY):
        assert [m["text"] for m in h.records(party)] == said, party


async def _api_room_hears(h: Harness, text: str, timeout: float = 60) -> None:
    await wait_until(lambda: any(f["text"] == text for f in h.stream.frames), timeout,
                     lambda: f"{text!r} in the API room: {h.stream.frames}")


async def _kill_between_store_and_delivery(h: Harness) -> None:
    """For a platform without re-delivery (IRC): a message stored in every store but not
    yet delivered survives a kill -9 and arrives once after the restart; what was said
    while the bridge was down is lost by the platform's nature (as the room declares),
    and nothing is doubled or half-kept."""
    stored, lost, after = ("stored before a crash", "said while the bridge was down",
                           "said after the restart")
    async with h.api_room_down():
        await h.peer.say(stored, "Alice")
        await wait_until(lambda: all(
            [m["text"] for m in h.records(p)] == [stored] for p in (PEER_PARTY, API_PARTY)),
            30, lambda: "the message in both stores")
        h.daemon.kill()
        await h.peer.say(lost, "Alice")
        await h.start()
    await h.peer.say(after, "Alice")
    await h.frames(2, timeout=60)
    await asyncio.sleep(2.0)  # a second copy, or the lost line after all, has come by now
    assert [(f["kind"], f["text"]) for f in h.stream.frames] == [
        ("message", stored), ("message", after)], h.stream.frames
    for party in (PEER_PARTY, API_PARTY):
        assert [m["text"] for m in h.records(party)] == [stored, after]


FILE_LINE = re.compile(r"\[file: (.+?) \(([^,()]+), ([^()]+)\)\]")


def assert_same_files(got: list[PeerFile], sent: list[PeerFile]) -> None:
    """The same files in the same order: equal bytes, names made safe, and the type sent
    where the name agrees with it (a platform may type a file by its name: Telegram calls
    an ``.exe`` a program). An image a platform shows as a photo (Telegram) has no name
    nor type of its own there: ``files_of`` gives it an empty name, and only its bytes
    are compared."""
    assert len(got) == len(sent), ([g.name for g in got], [s.name for s in sent])
    for g, s in zip(got, sent, strict=True):
        assert g.data == s.data, (g.name, s.name)
        if g.name == "" and s.type.startswith("image/"):
            continue  # a photo
        if mimetypes.guess_type(s.name)[0] == s.type:
            assert g.type == s.type, (g.name, g.type, s.type)
        assert clean_name_ok(g.name, s.name), (g.name, s.name)


async def files_travel_and_are_kept(h: Harness) -> None:
    """An image, a PDF and a file with a hostile name (``../``, a right-to-left override,
    Cyrillic) go each way with equal bytes and safe names, and every party keeps them,
    across a restart. A platform without files (``no_files``) gets a ``[file: ...]`` line
    for each, and its people post none."""
    sent = list(SAMPLES)
    said: list[tuple[str, list[PeerFile]]] = []  # what every store must hold, in order
    frames: list[dict[str, Any]] = []
    if not h.peer.no_files:
        await h.peer.say_with_files("files from the platform", "Alice", sent)
        # one message, or one per file (files_apart), the first captioned with the text
        apart = [[f] for f in sent] if h.peer.files_apart else [sent]
        said += [("files from the platform" if i == 0 else "", files)
                 for i, files in enumerate(apart)]
        frames = await h.frames(len(apart))
        assert _words(frames[0]["text"]) == "files from the platform"
        for frame, files in zip(frames, apart, strict=True):
            assert [a["sha256"] for a in frame["attachments"]] == [f.sha256 for f in files]
            assert_same_files(await h.api_files(frame), files)
    await h.restart()
    for frame, (_, files) in zip(frames, said, strict=True):  # links outlive the process
        assert_same_files(await h.api_files(frame), files)
    status, answer = await post_files(h.api.session, h.api.base, "files from the web", "bob",
                                      sent, h.api.headers)
    assert status == 202, answer
    said.append(("files from the web", sent))
    if h.peer.no_files:
        def shown() -> str:
            return "\n".join(p.text for p in h.peer.posts())

        await wait_until(lambda: len(FILE_LINE.findall(shown())) >= len(sent), 30,
                         lambda: f"a [file: ...] line per file in {shown()!r}")
        assert "files from the web" in _words(shown())
        lines = FILE_LINE.findall(shown())
        assert [kind for _, kind, _ in lines] == [f.type for f in sent], lines
        for (name, _, _), f in zip(lines, sent, strict=True):
            assert clean_name_ok(name, f.name), (name, f.name)
    else:
        [post] = await h.posts(1)
        assert "files from the web" in _words(post.text)
        got = await h.peer.files_of(post)
        deadline = time.monotonic() + 30
        while h.peer.files_apart and len(got) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # posts of their own, after the text's
            got = await h.peer.files_of(post)
        assert_same_files(got, sent)
    await asyncio.sleep(1.0)  # nothing else comes: no second copy, no echo
    assert len(h.stream.frames) == len(frames), h.stream.frames
    for party in (PEER_PARTY, API_PARTY):  # every party keeps every file, and it verifies
        records = h.records(party)
        assert [m["text"] for m in records] == [text for text, _ in said], party
        for m, (_, files) in zip(records, said, strict=True):
            assert [a["sha256"] for a in m["attachments"]] == [f.sha256 for f in files]
            assert [a["size"] for a in m["attachments"]] == [len(f.data) for f in files]
        verified = run_cli("history", "verify", "-c", str(h.config), "--party", party)
        assert verified.returncode == 0, verified.stdout + verified.stderr


Scenario = Callable[[Harness], Awaitable[None]]
ALL: tuple[Scenario, ...] = (
    relay_both_ways,
    replies_across_restart,
    edits_and_deletes,
    hostile_text_is_inert,
    kill_between_receive_and_store,
    files_travel_and_are_kept,
)
