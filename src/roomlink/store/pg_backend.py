"""The PostgreSQL backend, on asyncpg. Imported only when a party's store is on PostgreSQL.

SQLAlchemy and Alembic (about 21 MiB of a daemon, and part of its start-up) are loaded
only to migrate a store that is not at the newest revision (by a child process, unless
they are loaded already) and for the record's multi-statement writes (retention, through
``write_core``); a version check tells a current store (bench/README.md).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

import asyncpg

from roomlink.store import pg_ops, pg_queries, urls
from roomlink.store.backends import child_main, migrate_in_child
from roomlink.store.base import OutboxRow, RecordEntry, StoreError
from roomlink.store.migrate import pg_is_current
from roomlink.store.urls import redact

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

_MIGRATION_LOCK = 0x726F6F6D6C696E6B  # "roomlink": serialises concurrent openers on PostgreSQL


def connect_args(url: str) -> dict[str, Any]:
    """asyncpg's arguments for the store URL: the DSN without its userinfo, and the user
    and password apart, so that a password with an unencoded '@' or '/' is used as
    written rather than misread as the host (see roomlink.store.urls)."""
    parts = urls.split(url)
    if parts is None:
        raise StoreError(f"bad store URL {redact(url)!r}")
    args: dict[str, Any] = {"dsn": f"postgresql://{parts.rest}"}
    if parts.user:
        args["user"] = unquote(parts.user)
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    return args


def pg_url(url: str) -> URL:
    """The same target as SQLAlchemy's asyncpg dialect takes it (migrations, ``write_core``)."""
    from sqlalchemy.engine import make_url

    args = connect_args(url)
    try:
        u = make_url(args["dsn"])
    except Exception as e:
        raise StoreError(f"bad store URL {redact(url)!r}: {type(e).__name__}") from None
    return u.set(drivername="postgresql+asyncpg", username=args.get("user"),
                 password=args.get("password"))


def _engine(url: str) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(
        pg_url(url), pool_size=1, max_overflow=0, connect_args={"timeout": 10},
        hide_parameters=True,  # errors must never carry message content into logs
    )


def _pg_upgrade(conn: Connection) -> None:
    import sqlalchemy as sa

    from roomlink.store.migrate import upgrade

    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    upgrade(conn)


async def _migrate_here(url: str) -> None:
    engine = _engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_pg_upgrade)
    finally:
        await engine.dispose()


def migrate_child() -> int:
    """What the child process of :func:`_migrate` runs, the URL read from stdin (never
    from its command line, which every user of the machine can read)."""
    url = sys.stdin.readline().rstrip("\n")
    return child_main(lambda: asyncio.run(_migrate_here(url)))


_MIGRATE_CHILD = (
    "import sys; from roomlink.store.pg_backend import migrate_child as m; sys.exit(m())"
)


async def _migrate(url: str) -> None:
    """Alembic's upgrade, in a child process unless SQLAlchemy is loaded already (the
    tests, a CLI command): it would stay loaded for the daemon's lifetime."""
    if "sqlalchemy" in sys.modules:
        await _migrate_here(url)
        return
    await migrate_in_child(_MIGRATE_CHILD, stdin=url.encode() + b"\n")


class PostgresBackend:
    """asyncpg all the way: a connection for ``record`` and every other write, one for
    delivery marks (so that a room's next send never waits behind another group's record
    commit; bench/README.md), and a pool of two for reads.

    With ``async_marks``, the marks connection runs with ``synchronous_commit = off``:
    a mark is visible at once and survives a crash of roomlink, but a crash of the
    PostgreSQL server itself can lose the marks of its last moments (up to about three
    times ``wal_writer_delay``), and those copies are then sent again after the restart
    (never lost). ``record`` always waits for the server's flush.
    """

    ops: Any = pg_queries
    dialect = "postgresql"
    write_now: Callable[[Callable[[Any], Any]], Any] | None = None

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """asyncpg's errors, a server that cannot be reached (a read's pool reconnects),
        and SQLAlchemy's once something has loaded it."""
        sa = sys.modules.get("sqlalchemy")
        own: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError
        )
        return own if sa is None else (*own, sa.exc.SQLAlchemyError)

    def recorded(self) -> None:
        """Nothing to do: the GIN index is kept by PostgreSQL within each commit."""

    async def index_for_search(self) -> None:
        """Nothing to do (see recorded)."""

    def __init__(
        self, url: str, connect: dict[str, Any], pool: asyncpg.Pool, async_marks: bool
    ) -> None:
        self._url = url
        self._connect = connect  # connect_args(url)
        self._pool = pool
        self._async_marks = async_marks
        self._writer: asyncpg.Connection | None = None
        self._marker: asyncpg.Connection | None = None
        self._engine: AsyncEngine | None = None  # made for the first write_core
        self._heads = pg_ops.Heads()  # what the record connection chained on last

    @classmethod
    async def open(cls, url: str, async_marks: bool = False) -> PostgresBackend:
        args = connect_args(url)
        pool = await asyncpg.create_pool(**args, min_size=1, max_size=2, timeout=10)
        backend = cls(url, args, pool, async_marks)
        try:
            async with pool.acquire() as conn:
                current = await pg_is_current(conn)
            if not current:
                await _migrate(url)
            await backend._connection(marks=False)
            await backend._connection(marks=True)
        except BaseException:
            await backend.close()
            raise
        return backend

    async def _connection(self, *, marks: bool) -> asyncpg.Connection:
        """The hot-path connection, reconnected when the server dropped it."""
        conn = self._marker if marks else self._writer
        if conn is not None and not conn.is_closed():
            return conn
        settings = {"synchronous_commit": "off"} if marks and self._async_marks else None
        conn = await asyncpg.connect(**self._connect, timeout=10, server_settings=settings)
        if marks:
            self._marker = conn
        else:
            self._writer = conn
        return conn

    async def write(self, fn: Callable[[asyncpg.Connection], Any]) -> Any:
        """``fn(connection)`` (a ``pg_queries`` coroutine, or plain code) in a transaction
        on the writing connection."""
        conn = await self._connection(marks=False)
        try:
            async with conn.transaction():
                result = fn(conn)
                return await result if inspect.isawaitable(result) else result
        finally:  # it may have recorded or removed messages: heads are looked up again
            self._heads.forget()

    async def write_core(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a SQLAlchemy Core connection, in a transaction: the record's own
        multi-statement writes (``Store.write_with``). Loads SQLAlchemy the first time."""
        if self._engine is None:
            self._engine = _engine(self._url)
        try:
            async with self._engine.begin() as conn:
                result: T = await conn.run_sync(fn)
                return result
        finally:
            self._heads.forget()

    async def read(self, fn: Callable[[asyncpg.Connection], Any]) -> Any:
        async with self._pool.acquire() as conn:
            result = fn(conn)
            return await result if inspect.isawaitable(result) else result

    async def record(self, entries: Sequence[RecordEntry]) -> list[list[OutboxRow]]:
        """``ops.record``, atomically, on the record connection."""
        return await pg_ops.record(await self._connection(marks=False), entries, self._heads)

    async def mark_delivered_many(
        self, marks: Sequence[tuple[int, Sequence[str]]]
    ) -> list[Exception | None]:
        return await pg_ops.mark_delivered_many(await self._connection(marks=True), marks)

    async def read_aside(self, fn: Callable[[asyncpg.Connection], Any]) -> Any:
        return await self.read(fn)  # already off the loop: the server does the work

    async def close(self) -> None:
        for conn in (self._writer, self._marker):
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except (OSError, TimeoutError, asyncpg.InterfaceError):
                    conn.terminate()
        try:
            await asyncio.wait_for(self._pool.close(), 5)
        except (OSError, TimeoutError, asyncpg.InterfaceError):
            self._pool.terminate()
        if self._engine is not None:
            await self._engine.dispose()
