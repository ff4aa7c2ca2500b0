"""The PostgreSQL backend: SQLAlchemy's asyncpg engine, and asyncpg itself for the hot
writes. Imported only when a party's store is on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

import asyncpg
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from roomlink import urls
from roomlink.store import ops as core_ops
from roomlink.store import pg_ops
from roomlink.store.base import OutboxRow, RecordEntry, StoreError
from roomlink.store.migrate import upgrade
from roomlink.urls import redact

T = TypeVar("T")

_MIGRATION_LOCK = 0x726F6F6D6C696E6B  # "roomlink": serialises concurrent openers on PostgreSQL


def pg_url(url: str) -> URL:
    """The URL with the driver this module uses.

    The user and password are split off first (see roomlink.urls), so that a password
    with an unencoded '@' or '/' is used as written rather than misread as the host.
    """
    parts = urls.split(url)
    try:
        if parts is None or parts.user is None:
            u = make_url(url)
        else:
            u = make_url(parts.without_userinfo()).set(
                username=unquote(parts.user) or None,
                password=None if parts.password is None else unquote(parts.password),
            )
    except Exception as e:
        raise StoreError(f"bad store URL {redact(url)!r}: {type(e).__name__}") from None
    return u.set(drivername="postgresql+asyncpg")


def _pg_upgrade(conn: Connection) -> None:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    upgrade(conn)


class PostgresBackend:
    """An asyncpg engine for migrations, reads and the rarer writes (SQLAlchemy Core
    through run_sync), plus two plain asyncpg connections for the hot writes
    (``pg_ops``): one for ``record``, one for delivery marks, so that a room's next
    send never waits behind another group's record commit (bench/README.md).

    With ``async_marks``, the marks connection runs with ``synchronous_commit = off``:
    a mark is visible at once and survives a crash of roomlink, but a crash of the
    PostgreSQL server itself can lose the marks of its last moments (up to about three
    times ``wal_writer_delay``), and those copies are then sent again after the restart
    (never lost). ``record`` always waits for the server's flush.
    """

    ops: Any = core_ops
    dialect = "postgresql"
    write_now: Callable[[Callable[[Any], Any]], Any] | None = None
    errors: tuple[type[BaseException], ...] = (
        sa.exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError
    )

    def recorded(self) -> None:
        """Nothing to do: the GIN index is kept by PostgreSQL within each commit."""

    async def index_for_search(self) -> None:
        """Nothing to do (see recorded)."""

    def __init__(self, engine: AsyncEngine, dsn: str, async_marks: bool) -> None:
        self._engine = engine
        self._dsn = dsn
        self._async_marks = async_marks
        self._writer: asyncpg.Connection | None = None
        self._marker: asyncpg.Connection | None = None
        self._heads = pg_ops.Heads()  # what the record connection chained on last

    @classmethod
    async def open(cls, url: URL, async_marks: bool = False) -> PostgresBackend:
        engine = create_async_engine(
            url, pool_size=2, max_overflow=0, connect_args={"timeout": 10},
            hide_parameters=True,  # errors must never carry message content into logs
        )
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_pg_upgrade)
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            backend = cls(engine, dsn, async_marks)
            await backend._connection(marks=False)
            await backend._connection(marks=True)
        except BaseException:
            await engine.dispose()
            raise
        return backend

    async def _connection(self, *, marks: bool) -> asyncpg.Connection:
        """The hot-path connection, reconnected when the server dropped it."""
        conn = self._marker if marks else self._writer
        if conn is not None and not conn.is_closed():
            return conn
        settings = {"synchronous_commit": "off"} if marks and self._async_marks else None
        conn = await asyncpg.connect(self._dsn, timeout=10, server_settings=settings)
        if marks:
            self._marker = conn
        else:
            self._writer = conn
        return conn

    async def write(self, fn: Callable[[Connection], T]) -> T:
        try:
            async with self._engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:  # it may have recorded or removed messages: heads are looked up again
            self._heads.forget()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    async def record(self, entries: Sequence[RecordEntry]) -> list[list[OutboxRow]]:
        """``ops.record``, atomically, on the record connection."""
        return await pg_ops.record(await self._connection(marks=False), entries, self._heads)

    async def mark_delivered_many(
        self, marks: Sequence[tuple[int, Sequence[str]]]
    ) -> list[Exception | None]:
        return await pg_ops.mark_delivered_many(await self._connection(marks=True), marks)

    async def read_aside(self, fn: Callable[[Connection], T]) -> T:
        return await self.read(fn)  # already off the loop: the server does the work

    async def close(self) -> None:
        for conn in (self._writer, self._marker):
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except (OSError, TimeoutError, asyncpg.InterfaceError):
                    conn.terminate()
        await self._engine.dispose()


