"""The start's repair (``relay.repair``) on both engines: a batch a kill -9 left in one
party's store only is appended to the other's, with that party's copies to deliver, and
both records end equal (same digest line, unbroken chains); a party a reload added to a
pipe is never given the pipe's history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from roomlink.message.model import Attachment, Author, Message, RoomRef, utcnow
from roomlink.record import retention
from roomlink.record.compare import compare
from roomlink.record.sign import digest_line
from roomlink.record.verify import walk_store
from roomlink.relay.ingest import BatchWriter
from roomlink.relay.repair import repair_stores
from roomlink.relay.topology import Pipe, PipeRoom, Topology
from roomlink.store import NewMessage, OutboxRow, Store, open_store
from store.conftest import pg_database

AGENCY, ACME = RoomRef("agency-api", "lobby"), RoomRef("acme-api", "lobby")
ACME_SIDE = RoomRef("acme-api", "side")  # a second room of acme's in the pipe
PIPE = "project"
BOTH = Topology({PIPE: Pipe(PIPE, (PipeRoom(AGENCY, "agency", "inout"),
                                   PipeRoom(ACME, "acme", "inout")))})


@dataclass
class Ingest:
    """The router's side of BatchWriter: what the daemon hands it."""

    topology: Topology
    stores: Mapping[str, Store]
    pushed: list[OutboxRow] = field(default_factory=list)
    pipe_lock: None = None  # one process: no other appends to keep out
    upstream: frozenset[str] = frozenset()  # no federation link here

    def on_recorded(self, _store: Store, rows: Sequence[OutboxRow]) -> None:
        self.pushed.extend(rows)

    async def write(self, *messages: Message) -> None:
        """Record ``messages`` in every party's store, as the router does."""
        loop_future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        await BatchWriter(self).write([(list(messages), loop_future)])
        assert loop_future.result() == [m.id for m in messages]

    async def write_only(self, party: str, *messages: Message) -> None:
        """What a kill -9 between the stores' commits leaves: ``messages`` in the store of
        ``party`` only, exactly as the ingest writes them there."""
        entries = BatchWriter(self)._entries(messages)[party]
        await self.stores[party].append(entries)


def said(n: int, origin: RoomRef = AGENCY) -> Message:
    return Message(id=f"m{n:04d}", pipe=PIPE, origin_connector=origin.connector,
                   origin_room=origin.room, author=Author(name="Alice", party="agency",
                                                          platform="api"),
                   text=f"message {n}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[dict[str, Store]]:
    """The stores of agency and acme, both on one engine."""
    async with contextlib.AsyncExitStack() as stack:
        opened: dict[str, Store] = {}
        for party in ("agency", "acme"):
            if request.param == "sqlite":
                url = f"sqlite:///{tmp_path}/{party}.db"
            else:
                url = await stack.enter_async_context(pg_database())
            opened[party] = await open_store(party, url)
            stack.push_async_callback(opened[party].close)
        yield opened


async def digest(store: Store) -> str:
    walk = (await walk_store(store, PIPE)).pipe(PIPE)
    assert walk.broken is None, str(walk.broken)  # its stored chain checks out
    return digest_line(PIPE, walk.count, walk.last_id, walk.head)


async def ids(store: Store) -> list[str]:
    return [m.id for _, m in await store.messages(PIPE)]


async def pending_rooms(store: Store) -> list[tuple[str, str, str]]:
    return [(e.message_id, e.connector, e.room)
            for e in await store.outbox_entries(state="pending")]


async def test_a_batch_committed_in_one_store_only_is_appended_to_the_other(
    stores: dict[str, Store], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ingest = Ingest(BOTH, stores)
    assert await repair_stores(BOTH, stores) == {}  # the first start: nothing to do
    await ingest.write(*(said(i) for i in range(5)))
    # the batch in flight at the kill -9: acme committed it, agency did not
    with_files = said(6, ACME).model_copy(update={"attachments": (
        Attachment(name="plan.pdf", mime="application/pdf", size=3, sha256="ab" * 32),
        Attachment(url="https://example.org/big.bin", name="big.bin", note="too big"))})
    await ingest.write_only("acme", said(5), with_files, said(7))
    assert await ids(stores["agency"]) == [f"m{i:04d}" for i in range(5)]
    pending_before = await pending_rooms(stores["agency"])

    assert await repair_stores(BOTH, stores) == {("agency", PIPE): 3}

    assert await ids(stores["agency"]) == await ids(stores["acme"])
    assert await digest(stores["agency"]) == await digest(stores["acme"])
    assert await stores["agency"].get_message("m0006") == with_files
    agree, why = await compare(stores["agency"], stores["acme"], PIPE)
    assert agree, why
    # agency's room gets what was said in acme's, as the ingest would have had it
    assert await pending_rooms(stores["agency"]) == [*pending_before,
                                                    ("m0006", "agency-api", "lobby")]
    logged = [r.getMessage() for r in caplog.records if r.name == "roomlink.repair"]
    assert len(logged) == 1 and "agency" in logged[0] and PIPE in logged[0]
    assert "3 messages" in logged[0]
    # a second start finds nothing to do, and new messages chain on in both
    assert await repair_stores(BOTH, stores) == {}
    await ingest.write(said(8))
    assert await digest(stores["agency"]) == await digest(stores["acme"])


async def test_the_first_batch_of_a_pipe_half_stored_is_repaired_too(
    stores: dict[str, Store]
) -> None:
    ingest = Ingest(BOTH, stores)
    await repair_stores(BOTH, stores)  # the start before the crash
    await ingest.write_only("acme", said(0), said(1))
    assert await ids(stores["agency"]) == []

    assert await repair_stores(BOTH, stores) == {("agency", PIPE): 2}
    assert await ids(stores["agency"]) == ["m0000", "m0001"]
    assert await digest(stores["agency"]) == await digest(stores["acme"])


async def test_a_party_added_to_a_pipe_is_not_given_its_history(
    stores: dict[str, Store]
) -> None:
    acme_only = Topology({PIPE: Pipe(PIPE, (PipeRoom(ACME, "acme", "inout"),
                                            PipeRoom(ACME_SIDE, "acme", "inout")))})
    await repair_stores(acme_only, stores)
    await Ingest(acme_only, stores).write(*(said(i, ACME) for i in range(4)))
    # a reload (or an edited config) puts agency's room into the pipe: agency's store
    # holds nothing of it, and must not be given what was said before
    added = Topology({PIPE: Pipe(PIPE, (*acme_only.pipe(PIPE).rooms,
                                        PipeRoom(AGENCY, "agency", "inout")))})
    assert await repair_stores(added, stores) == {}
    assert await ids(stores["agency"]) == []
    assert await pending_rooms(stores["agency"]) == []

    # from then on agency is in the pipe: a batch half stored is a gap to repair
    ingest = Ingest(added, stores)
    await ingest.write(said(4, ACME))
    await ingest.write_only("acme", said(5, ACME))
    assert await repair_stores(added, stores) == {("agency", PIPE): 1}
    assert await ids(stores["agency"]) == ["m0004", "m0005"]
    assert await pending_rooms(stores["agency"]) == [("m0004", "agency-api", "lobby"),
                                                    ("m0005", "agency-api", "lobby")]
    # agency's chain is its own (it starts at m0004), and unbroken
    await digest(stores["agency"])


async def test_whichever_store_lacks_the_batch_is_the_one_repaired(
    stores: dict[str, Store]
) -> None:
    """The stores commit in no fixed order (PostgreSQL's writer tasks): here agency's
    store holds the pipe's first batch and acme's does not."""
    await repair_stores(BOTH, stores)
    await Ingest(BOTH, stores).write_only("agency", said(0))
    assert await repair_stores(BOTH, stores) == {("acme", PIPE): 1}
    assert await digest(stores["agency"]) == await digest(stores["acme"])


async def test_record_tail_is_the_pipes_newest_rows_in_record_order(
    stores: dict[str, Store]
) -> None:
    store = stores["acme"]
    other = said(99).model_copy(update={"id": "elsewhere", "pipe": "other"})
    await Ingest(BOTH, stores).write(said(0), said(1), said(2))
    await store.append([NewMessage(other, ())])
    await Ingest(BOTH, stores).write(said(3))
    assert [r.id for r in await store.record_tail(PIPE, 2)] == ["m0002", "m0003"]
    assert [r.id for r in await store.record_tail(PIPE, 10)] == [
        "m0000", "m0001", "m0002", "m0003"]
    assert [r.chain_n for r in await store.record_tail(PIPE, 10)] == [1, 2, 3, 4]
    assert await store.record_tail("nowhere", 10) == []


async def test_a_store_retention_emptied_is_not_given_the_history_back(
    stores: dict[str, Store]
) -> None:
    """agency keeps a day, acme keeps everything: agency's store holds nothing of the
    pipe after the cut, yet it stands where acme does."""
    await repair_stores(BOTH, stores)  # marks both stores: members from the pipe's start
    await Ingest(BOTH, stores).write(*(said(i) for i in range(3)))
    cut = await retention.apply(stores["agency"], 1, now=utcnow() + timedelta(days=2))
    assert cut == {PIPE: 3} and await ids(stores["agency"]) == []
    assert await repair_stores(BOTH, stores) == {}
    assert await ids(stores["agency"]) == []
    # and a batch only acme took after the cut is still a gap to repair
    await Ingest(BOTH, stores).write_only("acme", said(3))
    assert await repair_stores(BOTH, stores) == {("agency", PIPE): 1}
    assert await digest(stores["agency"]) == await digest(stores["acme"])
