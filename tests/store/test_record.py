"""The record in the store contract: hash chains, tampering, anchors, search, migration.

Every test runs on SQLite and on the real PostgreSQL server (the ``store`` fixture).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command

from roomlink.message.model import Attachment, Kind
from roomlink.record import retention
from roomlink.record.search import search
from roomlink.record.verify import ALTERED, INSERTED, REMOVED, REORDERED, rows_in_order, walk_store
from roomlink.store import NewMessage, Store, chain, open_store
from roomlink.store.migrate import alembic_config
from roomlink.store.postgres.engine import PostgresStore
from roomlink.store.sqlite import queries as sqlite_queries
from roomlink.store.sqlite.engine import SqliteStore
from store.conftest import StoreFactory
from store.test_store import IRC, msg


async def _sql(url: str, *statements: str) -> None:
    """Change the database behind roomlink's back, as a tamperer would."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            for s in statements:
                conn.execute(s)
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(url)
    try:
        for s in statements:
            await pg.execute(s)
    finally:
        await pg.close()


async def _ten(store: Store) -> None:
    await store.append([NewMessage(msg(i)) for i in range(10)])


async def test_chain_is_the_documented_hash_of_the_canonical_bytes(store: Store) -> None:
    rich = msg(1, kind=Kind.ACTION, text="ünï 🎉\nline", reply_to="m00000",
               attachments=(Attachment(url="https://x.test/a.png", name="a.png"),))
    await store.append([NewMessage(msg(0)), NewMessage(rich), NewMessage(msg(2, pipe="b"))])
    rows = [r async for r in rows_in_order(store)]
    assert [r.chain_n for r in rows] == [1, 2, 1]  # positions count per pipe
    first = chain.link(chain.GENESIS, chain.canonical(msg(0)))
    assert rows[0].chain == first
    assert rows[1].chain == chain.link(first, chain.canonical(rich))
    # what the store gives back encodes to the very bytes that were chained
    assert chain.canonical_stored(rows[1]) == chain.canonical(rich)
    assert rows[1].message() == rich
    assert chain.canonical(rich).startswith(b'roomlink.record.v1\n{"attachments":[{"mime":null')


async def test_two_stores_recording_the_same_messages_have_the_same_heads(
    open_: StoreFactory, tmp_path: object
) -> None:
    a = await open_()
    b = await open_store("acme", f"sqlite:///{tmp_path}/other.db")
    try:
        entries = [NewMessage(msg(i, pipe="p" if i % 3 else "q")) for i in range(12)]
        await a.append(entries[:5])
        await a.append(entries[5:])
        await b.append(entries)  # in one batch instead of two: the chain is the same
        await b.append(entries[2:4])  # duplicates change nothing
        wa, wb = await walk_store(a), await walk_store(b)
        for pipe in ("p", "q"):
            assert wa.pipes[pipe].broken is None and wb.pipes[pipe].broken is None
            assert wa.pipes[pipe].digest_fields() == wb.pipes[pipe].digest_fields()
        assert wa.pipes["p"].count == 8 and wa.pipes["q"].count == 4
    finally:
        await b.close()


@pytest.mark.parametrize(
    ("tamper", "position", "message_id", "kind"),
    [
        (["UPDATE messages SET text = 'I never said that' WHERE id = 'm00004'"],
         5, "m00004", ALTERED),
        (["DELETE FROM messages WHERE id = 'm00004'"], 5, "m00005", REMOVED),
        ([
            "UPDATE messages SET seq = -1 WHERE id = 'm00004'",
            "UPDATE messages SET seq = (SELECT seq FROM messages WHERE id = 'm00003') + 1 "
            "WHERE id = 'm00005'",
            "UPDATE messages SET seq = (SELECT seq FROM messages WHERE id = 'm00005') + 1 "
            "WHERE id = 'm00004'",
        ], 5, "m00005", REORDERED),
        (["INSERT INTO messages (id, pipe, kind, origin_connector, origin_room, author_name, "
          "author_party, author_platform, text, attachments, ts, recorded_at) "
          "SELECT 'forged', pipe, kind, origin_connector, origin_room, author_name, "
          "author_party, author_platform, 'I never said that', attachments, ts, recorded_at "
          "FROM messages WHERE id = 'm00003'"], 11, "forged", INSERTED),
        (["INSERT INTO messages (id, pipe, kind, origin_connector, origin_room, author_name, "
          "author_party, author_platform, text, attachments, ts, recorded_at, chain, chain_n) "
          "SELECT 'forged', pipe, kind, origin_connector, origin_room, author_name, "
          "author_party, author_platform, text, attachments, ts, recorded_at, chain, chain_n "
          "FROM messages WHERE id = 'm00003'"], 11, "forged", INSERTED),
    ],
    ids=["update-text", "delete-row", "swap-order", "insert-row", "insert-copy"],
)
async def test_tampering_by_sql_is_caught_and_located(
    store: Store, store_url: str, tamper: list[str], position: int, message_id: str, kind: str
) -> None:
    await _ten(store)
    before = (await walk_store(store)).pipes["project"]
    assert before.broken is None and before.count == 10
    await _sql(store_url, *tamper)
    after = (await walk_store(store)).pipes["project"]
    assert after.broken is not None
    assert (after.broken.position, after.broken.message_id, after.broken.kind) == (
        position, message_id, kind)
    assert after.digest_fields() != before.digest_fields()  # the digest line changes too


async def test_removing_the_newest_record_shows_only_against_another_digest(
    open_: StoreFactory, store_url: str
) -> None:
    store = await open_()
    await _ten(store)
    other = (await walk_store(store)).pipes["project"].digest_fields()
    await store.close()
    await _sql(store_url, "DELETE FROM messages WHERE id = 'm00009'")  # the newest one
    store = await open_()  # a restart: nothing remembered
    await store.append([NewMessage(msg(10))])
    walk = (await walk_store(store)).pipes["project"]
    # what is left is a consistent chain: only another party's digest (or a signed one
    # kept earlier) shows that a record went missing, which is what digests are for
    assert walk.broken is None and walk.count == 10
    assert walk.digest_fields()[:2] == other[:2] and walk.digest_fields() != other


async def test_retention_cuts_a_prefix_keeps_pending_and_an_anchor(store: Store) -> None:
    await store.append([NewMessage(msg(i), (IRC,) if i == 6 else ()) for i in range(10)])
    intact = (await walk_store(store)).pipes["project"].digest_fields()
    removed = await retention.apply(store, days=1, now=datetime.now(UTC) + timedelta(days=2))
    # message 6 still waits for delivery: it and everything after it stay
    assert removed == {"project": 6}
    assert [m.id for _, m in await store.messages()] == [f"m{i:05d}" for i in range(6, 10)]
    assert len(await store.pending(IRC.connector, IRC.room)) == 1
    walker = await walk_store(store)
    walk = walker.pipes["project"]
    assert walk.anchor is not None and walk.anchor.count == 6
    assert walk.anchor.message_id == "m00005"
    assert walk.broken is None and walk.digest_fields() == intact
    await store.append([NewMessage(msg(10))])  # the chain goes on from the anchor
    rows = [r async for r in rows_in_order(store)]
    assert rows[-1].chain_n == 11
    assert (await walk_store(store)).pipes["project"].broken is None
    # nothing young enough is touched
    assert await retention.apply(store, days=1) == {}


async def test_retention_cuts_everything_old_and_the_chain_continues(store: Store) -> None:
    await _ten(store)
    assert await retention.apply(store, 1, datetime.now(UTC) + timedelta(days=2)) == {
        "project": 10}
    assert await store.messages() == []
    await store.append([NewMessage(msg(10))])
    walk = (await walk_store(store)).pipes["project"]
    assert walk.broken is None and walk.count == 11


async def test_retention_refuses_to_anchor_a_tampered_prefix(
    store: Store, store_url: str
) -> None:
    await _ten(store)
    await _sql(store_url, "UPDATE messages SET text = 'x' WHERE id = 'm00002'")
    with pytest.raises(retention.Tampered, match="position 3"):
        await retention.apply(store, 1, datetime.now(UTC) + timedelta(days=2))
    assert len(await store.messages()) == 10


async def test_search_english_and_russian_with_pipe_and_author(store: Store) -> None:
    await store.append([
        NewMessage(msg(1, pipe="a", text="The contract is signed")),
        NewMessage(msg(2, pipe="a", text="Договор ПОДПИСАН вчера вечером")),
        NewMessage(msg(3, pipe="b", text="Новый договор на следующий год")),
        NewMessage(msg(4, pipe="b", text="unrelated words")),
        NewMessage(msg(5, pipe="a", kind=Kind.EDIT, target="m00001",
                        text="The contract is countersigned")),
    ])  # fmt: skip
    assert [h.id for h in await search(store, "contract")] == ["m00005", "m00001"]
    assert [h.id for h in await search(store, "countersigned")] == ["m00005"]  # edits too
    assert [h.id for h in await search(store, "договор")] == ["m00003", "m00002"]
    assert [h.id for h in await search(store, "подписан договор", pipe="a")] == ["m00002"]
    assert await search(store, "договор", pipe="zzz") == []
    hit = (await search(store, "вчера"))[0]
    assert "[вчера]" in hit.snippet and hit.pipe == "a" and hit.author == "alice"
    assert await search(store, "contract", author="bob") == []
    assert len(await search(store, "contract", author="ALICE", limit=1)) == 1
    assert await search(store, 'договор" OR "x') == []  # user text is never query syntax


async def test_migration_backfills_chains_of_existing_rows(store_url: str) -> None:
    """A store made by roomlink before the chain existed gets chains on upgrade."""
    old = await open_store("agency", store_url)
    await old.append([NewMessage(msg(i, pipe="p" if i % 2 else "q")) for i in range(6)])
    expected = (await walk_store(old)).pipes
    await old.close()

    def downgrade_and_upgrade(conn: sa.Connection) -> None:
        command.downgrade(alembic_config(conn), "0001")
        command.upgrade(alembic_config(conn), "head")

    if store_url.startswith("sqlite"):
        engine = sa.create_engine(store_url)
        with engine.begin() as conn:
            downgrade_and_upgrade(conn)
        engine.dispose()
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        aengine = create_async_engine(store_url.replace("postgresql:", "postgresql+asyncpg:"))
        async with aengine.begin() as aconn:
            await aconn.run_sync(downgrade_and_upgrade)
        await aengine.dispose()
    store = await open_store("agency", store_url)
    try:
        walker = await walk_store(store)
        for pipe in ("p", "q"):
            assert walker.pipes[pipe].broken is None
            assert walker.pipes[pipe].digest_fields() == expected[pipe].digest_fields()
        assert [h.id for h in await search(store, "hello")]  # the index was filled too
    finally:
        await store.close()


async def test_heads_for_a_status_page(store: Store) -> None:
    await store.append([NewMessage(msg(i, pipe="p" if i % 2 else "q")) for i in range(5)])
    walker = await walk_store(store)
    assert await store.chain_heads() == {
        p: (walker.pipes[p].count, walker.pipes[p].head) for p in ("p", "q")}


@pytest.mark.parametrize("text", [
    "", "plain", 'quotes " and \\ backslash', "ctl \x00\x01\x1f\x7f tab\t nl\n cr\r",
    "ünïcödé 🎉 договор", "\ud800 lone surrogate", "</script><b>",
])  # fmt: skip
def test_canonical_bytes_are_exactly_the_sorted_json_specification(text: str) -> None:
    fields = {
        "id": "i\"d", "pipe": "p", "kind": "message", "origin_connector": "c",
        "origin_room": "#r", "author_name": text, "author_id": None, "author_party": "a",
        "author_platform": "irc", "text": text, "reply_to": None, "target": "t",
        "ts": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    }  # fmt: skip
    for attachments in ([], [{"url": "https://x.test/ä", "name": text, "size": 3}]):
        both = {**fields, "attachments": attachments}
        assert chain.canonical_fields(**both) == chain.reference_bytes(**both)  # type: ignore[arg-type]


_COPY_AS_M1 = (
    "INSERT INTO messages (id, pipe, kind, origin_connector, origin_room, author_name, "
    "author_party, author_platform, text, attachments, ts, recorded_at, chain, chain_n) "
    "SELECT 'm00001', pipe, kind, origin_connector, origin_room, author_name, author_party, "
    "author_platform, text, attachments, ts, recorded_at, 'x', chain_n + 1 FROM messages"
)


async def test_a_rolled_back_append_leaves_the_chain_intact(store: Store) -> None:
    """Each engine remembers each pipe's head between transactions: never one rolled
    back (an append, then a failure in the same transaction)."""
    await store.append([NewMessage(msg(0))])
    if isinstance(store, SqliteStore):
        def append_then_fail(conn: sqlite_queries.Connection) -> None:
            sqlite_queries.append(conn, [NewMessage(msg(1))])
            raise RuntimeError("the rest of this transaction failed")

        with pytest.raises(RuntimeError):
            store.write_now(append_then_fail)
    else:
        assert isinstance(store, PostgresStore)

        async def copy_then_fail(conn: asyncpg.Connection) -> None:
            await conn.execute(_COPY_AS_M1)
            raise RuntimeError("the rest of this transaction failed")

        with pytest.raises(RuntimeError):
            await store._submit(copy_then_fail)
    await store.append([NewMessage(msg(2))])
    walk = (await walk_store(store)).pipes["project"]
    assert walk.broken is None and walk.count == 2
    assert [m.id for _, m in await store.messages()] == ["m00000", "m00002"]


async def test_taking_back_the_newest_records_keeps_the_chain(store: Store) -> None:
    """What the ingest does when another store refused a batch (Store.forget)."""
    await store.append([NewMessage(msg(i)) for i in range(3)])
    since = datetime.now(UTC) - timedelta(seconds=1)
    await store.append([NewMessage(msg(i)) for i in range(3, 5)])
    assert await store.forget(["m00003", "m00004"], since) == 2
    await store.append([NewMessage(msg(i)) for i in range(3, 6)])
    walk = (await walk_store(store)).pipes["project"]
    assert walk.broken is None and walk.count == 6


async def test_a_known_message_among_new_ones_is_skipped_and_the_chain_stays_whole(
    store: Store,
) -> None:
    """A platform delivers a message again in a batch with new ones (PostgreSQL records
    in one statement from the heads it remembers, and must notice the known one)."""
    await store.append([NewMessage(msg(i), (IRC,)) for i in range(2)])
    again = await store.append([NewMessage(msg(1), (IRC,)), NewMessage(msg(2), (IRC,))])
    assert again[0] == [] and [r.message.id for r in again[1]] == ["m00002"]
    await store.append([NewMessage(msg(3), (IRC,))])
    walk = (await walk_store(store)).pipes["project"]
    assert walk.broken is None and walk.count == 4
    assert [m.id for _, m in await store.messages()] == [f"m{i:05d}" for i in range(4)]


async def _fts_intact(store: Store) -> None:
    """SQLite: the search index holds exactly the indexed rows of the messages table."""
    if isinstance(store, SqliteStore):
        store.write_now(lambda c: c.execute(
            "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)"))


async def test_search_finds_what_was_recorded_again_after_a_take_back(store: Store) -> None:
    """SQLite gives the seq of removed newest rows to the next messages: those must be
    indexed, the removed ones must be gone from the index (migration 0003)."""
    await store.append([NewMessage(msg(i, text=f"early words {i}")) for i in range(3)])
    since = datetime.now(UTC) - timedelta(seconds=1)
    await store.append([NewMessage(msg(i, text="refused elsewhere")) for i in range(3, 5)])
    assert [h.id for h in await search(store, "refused")] == ["m00004", "m00003"]
    assert await store.forget(["m00003", "m00004"], since) == 2
    assert await search(store, "refused") == []
    await store.append([NewMessage(msg(i, text=f"recorded again {i}")) for i in range(5, 8)])
    assert [h.id for h in await search(store, "again")] == ["m00007", "m00006", "m00005"]
    assert len(await search(store, "words")) == 3
    await _fts_intact(store)


async def test_search_finds_new_messages_after_retention_removed_all(store: Store) -> None:
    await _ten(store)
    assert len(await search(store, "hello")) == 10
    await retention.apply(store, 1, datetime.now(UTC) + timedelta(days=2))
    assert await search(store, "hello") == []
    await store.append([NewMessage(msg(10, text="after the cut"))])
    assert [h.id for h in await search(store, "cut")] == ["m00010"]
    await _fts_intact(store)


async def test_sqlite_indexes_for_search_by_itself_a_moment_after_recording(
    store: Store,
) -> None:
    if not isinstance(store, SqliteStore):
        pytest.skip("PostgreSQL's GIN index is kept within each commit")
    await _ten(store)

    def waiting(conn: sqlite3.Connection) -> int:
        (n,) = conn.execute("SELECT count(*) FROM messages WHERE seq > "
                            "(SELECT indexed_seq FROM messages_fts_state)").fetchone()
        return int(n)

    for _ in range(50):
        if store.read_now(waiting) == 0:
            break
        await asyncio.sleep(0.1)
    assert store.read_now(waiting) == 0
    await _fts_intact(store)
