"""From one inbound event to a message in every party's store, with its outbox rows.

Inbound events are written in batches (group commit): while one batch is being
committed to the stores, the next one gathers. Every store receives the batches in the
same order, so every party's record has the same order. A caller's ``accept`` returns
only once every store of every pipe concerned has committed, which is what lets a
connector advance its cursor (or answer 202) safely.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet

from pydantic import ValidationError

from roomlink.errors import BadInput, ShuttingDown
from roomlink.message.model import (
    Author,
    Inbound,
    InboundAuthor,
    Kind,
    Message,
    RoomRef,
    clean_opt,
    clean_str,
    new_message_id,
    utcnow,
)
from roomlink.relay import metrics, placing
from roomlink.relay.ingest import BatchWriter, PipeLock
from roomlink.relay.repair import MAX_BATCH
from roomlink.relay.topology import Pipe, Topology
from roomlink.store import OutboxRow, Store
from roomlink.store.errors import describe

log = logging.getLogger("roomlink.router")

ECHO_MEMORY = 100_000


OnRecorded = Callable[[Store, Sequence[OutboxRow]], None]


class Router:
    def __init__(
        self,
        topology: Topology,
        stores: Mapping[str, Store],
        platforms: Mapping[str, str],
        on_recorded: OnRecorded,
    ) -> None:
        # what a reload replaces: only through update(), so input sees one whole config
        self._topology = topology
        self._platforms = dict(platforms)  # connector -> platform type
        self._stores = stores  # party -> store: the daemon's own map, read here, never changed
        self.on_recorded = on_recorded
        self._writer = BatchWriter(self)
        self._queue: deque[tuple[list[Message], asyncio.Future[list[str]]]] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._posted: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        # replicas: the lock that keeps other processes' appends to a pipe apart
        self.pipe_lock: PipeLock | None = None
        # federation (relay/placing.py): the connectors that lead to the instance hosting
        # their conversations (the daemon's own set), and who to tell that a message was
        # held for one
        self.upstream: AbstractSet[str] = frozenset()
        self.on_held: Callable[[str], None] = lambda connector: None

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def platforms(self) -> Mapping[str, str]:
        return self._platforms

    @property
    def stores(self) -> Mapping[str, Store]:
        return self._stores

    def update(self, topology: Topology, platforms: Mapping[str, str]) -> None:
        """A reload's pipes and connectors: input accepted from here on is routed by them.
        Batches already queued are written by the new topology, which keeps the pipes
        they were said in as retired ones."""
        self._topology = topology
        self._platforms = dict(platforms)

    def start(self) -> None:
        self._task = asyncio.create_task(self._ingest_loop(), name="router-ingest")

    async def close(self) -> None:
        """Refuse new input, finish writing what was accepted."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task

    # -- echo safety ---------------------------------------------------------------
    def note_posted(self, ref: RoomRef, native_id: str) -> None:
        """Remember a native id the bridge itself posted, so its echo is not relayed."""
        self._posted[(ref.connector, ref.room, native_id)] = None
        if len(self._posted) > ECHO_MEMORY:
            self._posted.popitem(last=False)

    def is_echo(self, ref: RoomRef, native_id: str | None) -> bool:
        return native_id is not None and (ref.connector, ref.room, native_id) in self._posted

    # -- input ---------------------------------------------------------------------
    async def accept(self, connector: str, inbound: Inbound) -> list[str]:
        """Record ``inbound`` in every store of every pipe its room is in; return the ids."""
        if self._closed:
            raise ShuttingDown("roomlink is shutting down")
        inbound = _cleaned(inbound)
        ref = RoomRef(connector, inbound.room)
        pipes = self.topology.inbound.get(ref, [])
        if not pipes or self.is_echo(ref, inbound.native_id):
            return []
        refused = _refusal(inbound)
        if refused is not None:
            raise BadInput(f"not a valid message: {refused}")
        origin_store = self.stores[self.topology.party_of[ref]]
        reply_to = target = None
        if inbound.reply_to_native is not None:
            reply_to = await self._resolve(origin_store, ref, inbound.reply_to_native)
        if inbound.target_native is not None:
            target = await self._resolve(origin_store, ref, inbound.target_native)
        if inbound.kind in (Kind.EDIT, Kind.DELETE):
            original = None if target is None else await _known(origin_store, target)
            if original is None or original.origin != ref:
                # platforms let people change only their own messages, which were said
                # in this room; anything else is a confused or hostile client
                log.info("%s: %s of a message not said in this room; ignored", ref, inbound.kind,
                         extra={"connector": ref.connector, "room": ref.room,
                                "party": origin_store.party})
                return []
        try:
            messages = self._messages(connector, ref, inbound, pipes, reply_to, target)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise BadInput(f"not a valid message: {problems}") from None
        if not messages:
            return []
        if self._closed:  # closed while the reply/target lookup ran
            raise ShuttingDown("roomlink is shutting down")
        held = await self._hold(messages)
        messages = [m for m in messages if m.pipe not in held]
        if not messages:
            return list(held.values())
        return [*held.values(), *await self._enqueue(messages)]

    async def _enqueue(self, messages: list[Message]) -> list[str]:
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append((messages, future))
        self._wake.set()
        return await future

    async def _hold(self, messages: Sequence[Message]) -> dict[str, str]:
        """Hold the messages of pipes another instance hosts (pipe -> id): they are
        recorded here only when they come back placed (relay/placing.py)."""
        held: dict[str, str] = {}
        for message in messages:
            up = placing.upstream_room(self.topology.pipe(message.pipe), self.upstream)
            if up is None:
                continue
            store = self.stores[self.topology.party_of[up]]
            # said again after a crash, and placed meanwhile: on record, not held again
            if await store.get_message(message.id) is None:
                await store.hold(up.connector, up.room, [message])
                metrics.HELD.labels(up.connector).inc()
                self.on_held(up.connector)
            held[message.pipe] = message.id
        return held

    async def place(self, connector: str, room: str, message: Message,
                    parties: Collection[str] | None = None) -> list[str]:
        """Record a whole message another instance sent through the link ``connector``
        into the conversation of its ``room``, in the order it arrives; its id once
        recorded. BadInput (counted and logged) when it may not be (relay/placing.py)."""
        if self._closed:
            raise ShuttingDown("roomlink is shutting down")
        ref = RoomRef(connector, room)
        pipes = self.topology.inbound.get(ref, [])
        try:
            if len(pipes) != 1:
                raise BadInput(f"conversation {room!r} is not shared on this link")
            if parties is not None and message.author.party not in parties:
                raise BadInput(f"party {message.author.party!r} is not one this link's "
                               "peer may speak for (peer_parties)")
            store = self.stores[self.topology.party_of[ref]]
            placed, own = await placing.checked(message, pipes[0], store, self.topology,
                                                self.stores, self.platforms)
        except BadInput as exc:
            metrics.REFUSED.labels(connector).inc()
            log.warning("%s: refused a message from the linked instance: %s", ref, exc,
                        extra={"connector": connector, "room": room})
            raise
        if placed is None:
            return [message.id]
        ids = await self._enqueue([placed])
        metrics.CROSSED.labels(connector).inc()
        if own:
            await store.release(ids)
        return ids

    def _messages(
        self,
        connector: str,
        ref: RoomRef,
        inbound: Inbound,
        pipes: Sequence[Pipe],
        reply_to: str | None,
        target: str | None,
    ) -> list[Message]:
        author = Author(
            name=inbound.author.name,
            id=inbound.author.id,
            party=self.topology.party_of[ref],
            platform=self.platforms[connector],
            avatar_url=inbound.author.avatar_url,
        )
        ts = inbound.ts or utcnow()
        return [
            Message(
                id=new_message_id(pipe.name, ref, _dedup_key(inbound)),
                pipe=pipe.name,
                kind=inbound.kind,
                origin_connector=connector,
                origin_room=inbound.room,
                origin_native_id=inbound.native_id,
                author=author,
                text=inbound.text,
                attachments=tuple(inbound.attachments),
                reply_to=reply_to,
                target=target,
                ts=ts,
            )
            for pipe in pipes
            if pipe.relays(inbound.kind)
        ]

    async def _resolve(self, store: Store, ref: RoomRef, native_id: str | None) -> str | None:
        """The message id behind a platform id in this room, or the id itself when it names
        a message this party has on record (how API clients name messages)."""
        if native_id is None:
            return None
        found = await store.message_id_for_native(ref.connector, ref.room, native_id)
        if found is None and await _known(store, native_id) is not None:
            found = native_id
        return found

    async def _ingest_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, count = [], 0
                while self._queue and count < MAX_BATCH:
                    item = self._queue.popleft()
                    batch.append(item)
                    count += len(item[0])
                try:
                    await self._write(batch)
                except Exception as exc:  # never leave a caller waiting forever
                    log.error("recording a batch failed: %s", describe(exc))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
            if self._closed:
                return

    async def _write(self, batch: list[tuple[list[Message], asyncio.Future[list[str]]]]) -> None:
        await self._writer.write(batch)


async def _known(store: Store, message_id: str) -> Message | None:
    """A message on record, or said here and held for the instance hosting its pipe (an
    edit or a reply may follow it before it comes back placed)."""
    return await store.get_message(message_id) or await store.held_message(message_id)


def _dedup_key(inbound: Inbound) -> str | None:
    """The platform id that makes a message unique.

    For an edit or a delete, ``native_id`` is the platform's id of the change event itself
    (a Slack event ts, a Telegram update id) where it has one: the same change read again
    after a crash is then the same record, not a second edit.
    """
    if inbound.native_id is None:
        return None
    if inbound.kind in (Kind.EDIT, Kind.DELETE):
        return f"{inbound.kind.value}:{inbound.native_id}"
    return inbound.native_id


def _cleaned(inbound: Inbound) -> Inbound:
    """``inbound`` with every string one a store could refuse made safe (see clean_str).

    The platform ids are cleaned too: the same dirty id always gives the same clean one.
    """
    return Inbound(
        room=inbound.room,
        author=InboundAuthor(clean_str(inbound.author.name), clean_opt(inbound.author.id),
                             clean_opt(inbound.author.avatar_url)),
        text=clean_str(inbound.text),
        kind=inbound.kind,
        native_id=clean_opt(inbound.native_id),
        reply_to_native=clean_opt(inbound.reply_to_native),
        target_native=clean_opt(inbound.target_native),
        attachments=inbound.attachments,
        ts=inbound.ts,
    )


# The most text one message may carry, in bytes of UTF-8. PostgreSQL's search index holds
# at most 1 MiB of words and positions per message (about three times the text at worst),
# so a longer text (a book pasted into a mail) would fail that store on every retry.
MAX_TEXT_BYTES = 256 * 1024


def _refusal(inbound: Inbound) -> str | None:
    """Why no message can be made of ``inbound`` (cleaned), or None."""
    if len(inbound.text) > MAX_TEXT_BYTES // 4 and len(inbound.text.encode()) > MAX_TEXT_BYTES:
        return f"text: longer than {MAX_TEXT_BYTES} bytes"
    if (inbound.kind in (Kind.MESSAGE, Kind.ACTION) and not inbound.text.strip()
            and not inbound.attachments):
        # nothing to show: most platforms refuse to post it (Slack's no_text, Telegram's
        # "message text is empty"); Telegram and email drop such messages themselves
        return "text: a message with neither text nor an attachment"
    return None
