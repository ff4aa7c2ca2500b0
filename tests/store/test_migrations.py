"""The Alembic migrations build exactly the tables the code uses (roomlink.store.schema)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from roomlink.store import open_store
from roomlink.store.schema import include_name, metadata


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
