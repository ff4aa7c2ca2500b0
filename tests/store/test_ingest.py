"""The router's batch writing across a SQLite and a real PostgreSQL store: one message a
store refuses fails only itself, and the stores never disagree (same messages, same
order, same hash chain)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from roomlink.message.model import Author, Inbound, InboundAuthor, Kind, Message, RoomRef, utcnow
from roomlink.record.compare import compare
from roomlink.record.verify import walk_store
from roomlink.relay.router import Router
from roomlink.relay.topology import Pipe, PipeRoom, Topology
from roomlink.store import NewMessage, OutboxRow, Store, StoreError, open_store
from store.conftest import pg_database

AGENCY, ACME = RoomRef("agency-api", "lobby"), RoomRef("acme-api", "lobby")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


async def _refuse_poison(refuser: str, sqlite_path: Path, pg_url: str) -> None:
    """Make one store (for real, in its own database) refuse any text containing 'poison',
    as a store would refuse something the others hold."""
    if refuser == "postgresql":
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("ALTER TABLE messages ADD CONSTRAINT refuse_marked "
                               "CHECK (position('poison' in text) = 0)")
        finally:
            await conn.close()
    else:
        with sqlite3.connect(sqlite_path) as conn:
            conn.execute("CREATE TRIGGER refuse_marked BEFORE INSERT ON messages "
                         "WHEN instr(new.text, 'poison') > 0 "
                         "BEGIN SELECT RAISE(ABORT, 'refused by a check'); END")


@pytest.mark.parametrize("refuser", ["postgresql", "sqlite"])
async def test_one_refused_message_fails_alone_and_stores_agree(
    tmp_path: Path, pg_url: str, refuser: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sqlite_path = tmp_path / "agency.db"
    stores: dict[str, Store] = {
        "agency": await open_store("agency", f"sqlite:///{sqlite_path}"),
        "acme": await open_store("acme", pg_url),
    }
    pushed: list[OutboxRow] = []

    def on_recorded(_store: Store, rows: Sequence[OutboxRow]) -> None:
        pushed.extend(rows)

    pipe = Pipe("project", (PipeRoom(AGENCY, "agency", "inout"), PipeRoom(ACME, "acme", "inout")))
    router = Router(Topology({"project": pipe}), stores,
                    {"agency-api": "api", "acme-api": "api"}, on_recorded)
    router.start()
    try:
        await _refuse_poison(refuser, sqlite_path, pg_url)

        async def post(text: str, author: str = "alice") -> list[str]:
            return await router.accept(
                "agency-api", Inbound(room="lobby", author=InboundAuthor(author), text=text,
                                      native_id=secrets.token_hex(8)))

        texts = [f"innocent {i}" for i in range(300)]
        texts[150] = "x\x00y"  # what PostgreSQL cannot hold: cleaned, not refused
        texts[151] = "lone \ud800 surrogate"
        posts = [post(t) for t in texts]
        posts.insert(100, post("this is poison", author="mallory\x00"))
        results = await asyncio.gather(*posts, return_exceptions=True)

        refused = results.pop(100)
        assert isinstance(refused, StoreError)
        assert all(isinstance(r, list) and len(r) == 1 for r in results), [
            r for r in results if not isinstance(r, list)][:3]
        ids = [r[0] for r in results if isinstance(r, list)]
        for store in stores.values():
            record = await store.messages(limit=1000)
            # every accepted message, in the same order in every store, nothing else
            assert sorted(m.id for _, m in record) == sorted(ids)
            assert [m.text for _, m in record if m.text.startswith(("x", "lone"))] == [
                "x\ufffdy", "lone \ufffd surrogate"]
        agency = [m.id for _, m in await stores["agency"].messages(limit=1000)]
        acme = [m.id for _, m in await stores["acme"].messages(limit=1000)]
        assert agency == acme
        agree, why = await compare(stores["agency"], stores["acme"], "project")
        assert agree, why
        for store in stores.values():  # each store's own hash chain is intact
            walk = (await walk_store(store, "project")).pipe("project")
            assert walk.broken is None, str(walk.broken)
        # each accepted message has its one outbox row (acme's room); the refused none
        assert sorted(row.message.id for row in pushed) == sorted(ids)
        assert await stores["acme"].counts() == {
            "messages": 300, "pending": 300, "delivered": 0, "failed": 0}
        # and the next batch is written normally
        assert len(await post("after")) == 1
    finally:
        await router.close()
        for store in stores.values():
            await store.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused" in logged  # the refusal is logged, by id ...
    assert "innocent" not in logged and "poison" not in logged  # ... never by content
    assert "mallory" not in logged


async def test_store_errors_never_carry_message_content(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused write's error names the driver's complaint, never the SQL parameters
    (other people's messages and names), whatever the caller logs of it."""
    caplog.set_level(logging.DEBUG)
    store = await open_store("acme", pg_url)
    # model_construct: past the model's cleaning, as a buggy caller would be
    bad = Message.model_construct(
        id="m1", pipe="project", kind=Kind.MESSAGE, origin_connector="agency-api",
        origin_room="lobby", origin_native_id=None,
        author=Author.model_construct(name="Secret Name", id=None, party="agency",
                                      platform="api"),
        text="private words\x00", attachments=(), reply_to=None, target=None, ts=utcnow(),
    )  # fmt: skip
    try:
        with pytest.raises(StoreError) as caught:
            await store.append([NewMessage(bad, (ACME,))])
    finally:
        await store.close()
    text = f"{caught.value} {caught.value!r}"
    assert "private" not in text and "Secret" not in text and "INSERT" not in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "private" not in logged and "Secret" not in logged
