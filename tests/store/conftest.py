"""The store contract suite runs against both engines: SQLite and a real PostgreSQL."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from roomlink.store import Store, open_store

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_HINT = (
    "PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres, database test); start it "
    "with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)

StoreFactory = Callable[[], Awaitable[Store]]


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        pytest.fail(f"{PG_HINT} ({type(e).__name__}: {e})", pytrace=False)


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards; yields its URL."""
    name = f"rl_{secrets.token_hex(6)}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty store URL (a new SQLite file, or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db"
        return
    async with pg_database() as url:
        yield url


@pytest.fixture
async def open_(store_url: str) -> AsyncIterator[StoreFactory]:
    """Opens (and at teardown closes) stores on ``store_url``; use for close/reopen tests."""
    opened: list[Store] = []

    async def factory() -> Store:
        s = await open_store("agency", store_url)
        opened.append(s)
        return s

    yield factory
    for s in opened:
        await s.close()


@pytest.fixture
async def store(open_: StoreFactory) -> Store:
    return await open_()
