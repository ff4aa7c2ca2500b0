"""Where store transactions run: a dedicated SQLite thread, or an asyncpg engine.

Both run the same sync Core functions (``roomlink.store.ops``): one call of ``write`` or
``read`` is one transaction.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from roomlink.store.base import StoreError
from roomlink.store.migrate import upgrade

T = TypeVar("T")

_MIGRATION_LOCK = 0x726F6F6D6C696E6B  # "roomlink": serialises concurrent openers on PostgreSQL

# Alembic keeps its migration context in module globals, so two stores must not migrate at
# once in one process (threads or greenlets): opening is serialised per event loop.
_open_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _open_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _open_locks.get(loop)
    if lock is None:
        lock = _open_locks[loop] = asyncio.Lock()
    return lock


class Backend(Protocol):
    async def write(self, fn: Callable[[Connection], T]) -> T: ...
    async def read(self, fn: Callable[[Connection], T]) -> T: ...
    async def close(self) -> None: ...


def redact(url: str) -> str:
    """The URL with any password replaced by '***' (works on unparseable URLs too)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse_url(url: str) -> tuple[str, URL]:
    """('sqlite' | 'postgresql', the URL with the driver this module uses)."""
    try:
        u = make_url(url)
    except Exception as e:
        raise StoreError(f"bad store URL {redact(url)!r}: {e}") from None
    scheme = u.drivername.split("+", 1)[0]
    if scheme == "sqlite":
        return "sqlite", u.set(drivername="sqlite+pysqlite")
    if scheme in ("postgresql", "postgres"):
        return "postgresql", u.set(drivername="postgresql+asyncpg")
    raise StoreError(
        f"unsupported store URL {redact(url)!r}: expected sqlite:///PATH or postgresql://..."
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
    finally:
        cur.close()


class SqliteBackend:
    """One long-lived sync connection, used only from one dedicated thread."""

    def __init__(self, executor: ThreadPoolExecutor, engine: sa.Engine, conn: Connection):
        self._executor = executor
        self._engine = engine
        self._conn = conn

    @classmethod
    async def open(cls, url: URL) -> SqliteBackend:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roomlink-sqlite")

        def connect() -> tuple[sa.Engine, Connection]:
            db = url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=sa.pool.StaticPool)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            try:
                conn = engine.connect()
                with conn.begin():
                    upgrade(conn)
            except BaseException:
                engine.dispose()
                raise
            return engine, conn

        try:
            engine, conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, engine, conn)

    def _tx(self, fn: Callable[[Connection], T]) -> T:
        with self._conn.begin():
            return fn(self._conn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._tx, fn)

    read = write

    async def close(self) -> None:
        def shut() -> None:
            self._conn.close()
            self._engine.dispose()

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


def _pg_upgrade(conn: Connection) -> None:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    upgrade(conn)


class PostgresBackend:
    """An asyncpg engine; each transaction runs a sync Core function through run_sync."""

    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    @classmethod
    async def open(cls, url: URL) -> PostgresBackend:
        engine = create_async_engine(url, pool_size=2, max_overflow=0, connect_args={"timeout": 10})
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_pg_upgrade)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    async def close(self) -> None:
        await self._engine.dispose()


async def open_backend(url: str) -> Backend:
    """Connect and migrate; any failure becomes a StoreError that shows no password."""
    scheme, u = parse_url(url)
    try:
        async with _open_lock():
            if scheme == "sqlite":
                return await SqliteBackend.open(u)
            return await PostgresBackend.open(u)
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        if u.password:
            text = text.replace(str(u.password), "***")
        raise StoreError(f"cannot open store {redact(url)}: {text}") from None
