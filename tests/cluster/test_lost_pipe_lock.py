"""Replicas: a replica whose pipe-lock connection breaks in the middle of a batch never
leaves the parties' stores with two batches in opposite orders (``relay.align``,
``relay.conditional``). In-process on the real PostgreSQL: two replicas' BatchWriters,
each with its own connections to both parties' databases and the real ``PipeLocks``;
replica A's append to one store is held back (a gate) while its lock connection's
backend is terminated and replica B writes the pipe, then let go. Deterministic: the
order of the appends is set by the gate, never by timing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from roomlink.daemon.cluster import PipeLocks
from roomlink.message.model import Author, Message, RoomRef
from roomlink.record.compare import compare
from roomlink.record.sign import digest_line
from roomlink.record.verify import walk_store
from roomlink.relay.ingest import BatchWriter
from roomlink.relay.topology import Pipe, PipeRoom, Topology
from roomlink.store import NewMessage, OutboxRow, Store, open_store
from roomlink.store.postgres.engine import PostgresStore
from roomlink.store.postgres.leases import Board, Fence
from roomlink.store.urls import connect_args
from store.conftest import pg_database

AGENCY, ACME = RoomRef("agency-api", "lobby"), RoomRef("acme-api", "lobby")
PIPE = "project"
TOPOLOGY = Topology({PIPE: Pipe(PIPE, (PipeRoom(AGENCY, "agency", "inout"),
                                       PipeRoom(ACME, "acme", "inout")))})


class Gated:
    """A store whose next append waits until the test lets it go (``reached`` is set
    once it waits); everything else is the store's own."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.armed = False
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _gate(self, append: Any) -> asyncio.Future[list[list[OutboxRow]]]:
        if not self.armed:
            return append()  # type: ignore[no-any-return]
        self.armed = False

        async def later() -> list[list[OutboxRow]]:
            self.reached.set()
            await self.go.wait()
            return await append()  # type: ignore[no-any-return]

        return asyncio.ensure_future(later())

    def start_append(self, entries: Sequence[NewMessage]) -> asyncio.Future[list[list[OutboxRow]]]:
        return self._gate(lambda: self.store.start_append(entries))

    def start_append_at(self, entries: Sequence[NewMessage], expect: Any
                        ) -> asyncio.Future[list[list[OutboxRow]]]:
        return self._gate(lambda: self.store.start_append_at(entries, expect))


@dataclass
class Replica:
    """The router's side of BatchWriter in one replica: its own stores (connections)
    and the real pipe locks, on boards of its own."""

    name: str
    urls: Mapping[str, str]
    stores: dict[str, Any] = field(default_factory=dict)
    topology: Topology = TOPOLOGY
    upstream: frozenset[str] = frozenset()
    boards: dict[str, Board] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = self.name
        self.parts = SimpleNamespace(topology=TOPOLOGY)
        self.pipe_lock = PipeLocks(self)  # type: ignore[arg-type]

    def board(self, party: str, locks: bool = False) -> Board:
        url = self.urls[party]
        if url not in self.boards:
            self.boards[url] = Board(url, timeout=5.0)
        return self.boards[url]

    def on_recorded(self, _store: Store, _rows: Sequence[OutboxRow]) -> None:
        pass

    async def open(self) -> None:
        for party, url in self.urls.items():
            store = await open_store(party, url)
            assert isinstance(store, PostgresStore)
            store.share(Fence(self.name))
            self.stores[party] = Gated(store)

    async def close(self) -> None:
        for store in self.stores.values():
            await store.store.close()
        for board in self.boards.values():
            await board.close()

    def write(self, *messages: Message) -> asyncio.Future[list[str]]:
        """Start writing ``messages`` as one request; its future."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self.task = asyncio.ensure_future(BatchWriter(self).write([(list(messages), future)]))
        return future


def said(name: str, origin: RoomRef = AGENCY) -> Message:
    return Message(id=name, pipe=PIPE, origin_connector=origin.connector,
                   origin_room=origin.room,
                   author=Author(name="Alice", party="agency", platform="api"), text=name)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica]]:
    async with pg_database() as agency, pg_database() as acme:
        urls = {"agency": agency, "acme": acme}
        a, b = Replica("a", urls), Replica("b", urls)
        try:
            await a.open()
            await b.open()
            yield a, b
        finally:
            await a.close()
            await b.close()


async def kill_lock_connection(replica: Replica) -> None:
    """What a broken network does to the connection holding the pipe's lock: the server
    ends its session and lets the lock go."""
    board = replica.board(TOPOLOGY.pipe(PIPE).parties[0], locks=True)
    pid = board.pid
    assert pid is not None
    conn = await asyncpg.connect(**connect_args(board.url))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def agreed(stores: Mapping[str, Any]) -> list[str]:
    """Both stores hold the same messages in the same order, once each, with unbroken
    chains and equal digests; returns the order."""
    order = {p: [m.id for _, m in await s.messages(PIPE)] for p, s in stores.items()}
    assert order["agency"] == order["acme"], order
    assert len(set(order["acme"])) == len(order["acme"])
    lines = set()
    for store in stores.values():
        walk = (await walk_store(store.store, PIPE)).pipe(PIPE)
        assert walk.broken is None, str(walk.broken)
        lines.add(digest_line(PIPE, walk.count, walk.last_id, walk.head))
    assert len(lines) == 1, lines
    same, why = await compare(stores["agency"].store, stores["acme"].store, PIPE)
    assert same, why
    return order["acme"]


async def race(a: Replica, b: Replica, held: str) -> tuple[asyncio.Future[list[str]], list[str]]:
    """A writes a1 with its append to ``held``'s store held back; A's lock connection
    dies; B writes b1 (it gets the lock the server let go) and finishes; then A's held
    append goes on. Returns A's request's future and B's answer."""
    first = b.write(said("b0"))
    assert await first == ["b0"]
    gate = a.stores[held]
    gate.armed = True
    late = a.write(said("a1"))
    await asyncio.wait_for(gate.reached.wait(), 10)
    await kill_lock_connection(a)
    answer = await asyncio.wait_for(b.write(said("b1", ACME)), 10)
    gate.go.set()
    await asyncio.wait_for(a.task, 10)
    return late, answer


async def test_a_batch_one_store_took_before_the_lock_broke_is_given_to_the_others(
    replicas: tuple[Replica, Replica], caplog: pytest.LogCaptureFixture
) -> None:
    """A's batch is in acme's store (the pipe's first store by name, written first) when
    the lock goes; B gives it to agency's store before its own, A's late append finds it
    there: A's request is answered as recorded, and both stores read b0, a1, b1."""
    caplog.set_level(logging.WARNING)
    a, b = replicas
    late, answer = await race(a, b, held="agency")
    assert answer == ["b1"]
    assert late.result() == ["a1"]
    assert await agreed(a.stores) == ["b0", "a1", "b1"]
    logged = " | ".join(r.getMessage() for r in caplog.records)
    assert "replica a lost the lock of pipe project" in logged


async def test_a_batch_no_store_took_before_the_lock_broke_is_refused_for_a_retry(
    replicas: tuple[Replica, Replica]
) -> None:
    """A's append to the pipe's first store is held back: B writes b1 everywhere first,
    so that store refuses A's batch (its pipe moved), A writes it nowhere else and its
    request fails; the client's retry records it after b1."""
    a, b = replicas
    late, answer = await race(a, b, held="acme")
    assert answer == ["b1"]
    with pytest.raises(Exception, match="another replica wrote the pipe"):
        late.result()
    assert await agreed(a.stores) == ["b0", "b1"]
    assert await a.write(said("a1")) == ["a1"]  # the retry
    assert await agreed(b.stores) == ["b0", "b1", "a1"]


async def test_without_a_race_replicas_take_turns(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    for i in range(3):
        assert await a.write(said(f"a{i}")) == [f"a{i}"]
        assert await b.write(said(f"b{i}", ACME)) == [f"b{i}"]
    assert await agreed(a.stores) == ["a0", "b0", "a1", "b1", "a2", "b2"]
