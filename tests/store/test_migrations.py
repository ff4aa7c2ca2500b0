"""The Alembic migrations build exactly the tables the code uses (roomlink.store.tables),
with the indexes the lookups need."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from roomlink.store import NewMessage, open_store
from roomlink.store.sqlite import queries as sqlite_queries
from roomlink.store.tables import include_name, metadata
from store.test_store import IRC, msg


def _differences(conn: sa.Connection) -> list[Any]:
    return list(compare_metadata(
        MigrationContext.configure(conn, opts={"include_name": include_name}), metadata
    ))


async def test_migrated_schema_matches_the_code(store_url: str) -> None:
    store = await open_store("agency", store_url)  # runs the migrations
    await store.close()
    if store_url.startswith("sqlite"):
        engine = sa.create_engine(store_url)
        try:
            with engine.connect() as conn:
                assert _differences(conn) == []
        finally:
            engine.dispose()
        return
    async_engine = create_async_engine(store_url.replace("postgresql:", "postgresql+asyncpg:"))
    try:
        async with async_engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await async_engine.dispose()


def _index_entries(conn: sqlite3.Connection, index: str) -> int:
    rows = conn.execute(
        "SELECT coalesce(sum(ncell), 0) FROM dbstat WHERE name = ? AND pagetype = 'leaf'",
        (index,),
    )
    return int(rows.fetchone()[0])


async def test_rows_without_a_platform_id_stay_out_of_its_indexes(tmp_path: Path) -> None:
    """A copy still waiting and a message from IRC have no platform id, so they add no entry
    to the indexes of platform ids (migration 0004: one page less to write when a message is
    recorded and when it is marked delivered), and the lookup platform id -> message still
    searches those indexes instead of scanning the tables."""
    path = tmp_path / "s.db"
    store = await open_store("acme", f"sqlite:///{path}")
    [[waiting]] = await store.append([NewMessage(msg(1), [IRC])])
    from_irc = msg(2, origin_connector=IRC.connector, origin_room=IRC.room, origin_native_id=None)
    await store.append([NewMessage(from_irc)])
    conn = sqlite3.connect(path)
    try:
        assert _index_entries(conn, "ix_outbox_native") == 0
        assert _index_entries(conn, "ix_messages_origin") == 1  # msg(1) only
        await store.mark_delivered(waiting.id, ["irc-1", "irc-1b"])
        assert _index_entries(conn, "ix_outbox_native") == 1

        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        for native in ("irc-1", "irc-1b"):
            found = sqlite_queries.message_id_for_native(conn, IRC.connector, IRC.room, native)
            assert found == "m00001"
        conn.set_trace_callback(None)
        lookup = statements[0]
        params = (IRC.connector, IRC.room, "irc-1") * 3 if "?" in lookup else ()
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {lookup}", params)]
        searched = " ".join(plan)
        for index in ("ix_messages_origin", "ix_outbox_native", "ix_natives_lookup"):
            assert f"USING INDEX {index}" in searched, plan
        assert [line for line in plan if line.startswith("SCAN ")
                and not line.startswith("SCAN (subquery")] == [], plan
    finally:
        conn.close()
        await store.close()
