"""Where store transactions run: a ``sqlite3`` connection, or an asyncpg engine.

Each backend brings its module of operations with one contract: ``sqlite_ops`` on the
sqlite3 connection, ``ops`` (SQLAlchemy Core) on PostgreSQL. One call of ``write`` is
one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import asyncpg
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from roomlink import urls
from roomlink.store import ops as core_ops
from roomlink.store import pg_ops, sqlite_ops
from roomlink.store.base import OutboxRow, RecordEntry, StoreError
from roomlink.store.migrate import upgrade
from roomlink.urls import redact

T = TypeVar("T")

CHECKPOINT_INTERVAL = 1.0  # seconds

log = logging.getLogger("roomlink.store")

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
    ops: Any  # the module of store operations for this backend's connection type
    dialect: str  # "sqlite" (a sqlite3 connection) or "postgresql" (a Core Connection)
    errors: tuple[type[BaseException], ...]  # the driver's errors, reported as StoreError
    # set when transactions run synchronously on the loop (SQLite): then a single small
    # write need not wait for the group-commit writer
    @property
    def write_now(self) -> Callable[[Callable[[Any], Any]], Any] | None: ...

    async def write(self, fn: Callable[[Any], T]) -> T: ...
    async def read(self, fn: Callable[[Any], T]) -> T: ...
    # a read that may scan much (counts for the status page): never on the loop's connection
    async def read_aside(self, fn: Callable[[Any], T]) -> T: ...
    async def close(self) -> None: ...


def parse_url(url: str) -> tuple[str, URL]:
    """('sqlite' | 'postgresql', the URL with the driver this module uses).

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
    scheme = u.drivername.split("+", 1)[0]
    if scheme == "sqlite":
        if not u.database or u.database == ":memory:" or u.database.startswith("file:"):
            raise StoreError(f"a sqlite store must be a file: {redact(url)!r}")
        return "sqlite", u.set(drivername="sqlite+pysqlite")
    if scheme in ("postgresql", "postgres"):
        return "postgresql", u.set(drivername="postgresql+asyncpg")
    raise StoreError(
        f"unsupported store URL {redact(url)!r}: expected sqlite:///PATH or postgresql://..."
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
    finally:
        cur.close()


class SqliteBackend:
    """One ``sqlite3`` connection, used inline on the event loop.

    A WAL commit with synchronous=NORMAL does not fsync and takes about 0.1 ms here: less
    than handing the work to a thread and back (bench/README.md). What does fsync is the
    WAL checkpoint, so it runs on a second connection in a thread, never inside a commit
    on the loop. Migrations still run through SQLAlchemy and Alembic, once, at open.
    """

    ops: Any = sqlite_ops
    dialect = "sqlite"
    errors: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError, sqlite3.Error)

    def __init__(self, conn: sqlite_ops.Connection, checkpointer: sqlite3.Connection,
                 path: str = "") -> None:
        self._conn = conn
        self._checkpointer = checkpointer
        self._path = path
        # counting a million outbox rows takes about a second: the status page's reads
        # run on this connection in a thread (WAL readers do not block the writer)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        # a cancelled to_thread() call leaves its thread running: close() takes this lock
        # so that it never closes the connection under a checkpoint in progress
        self._checkpoint_lock = threading.Lock()
        self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            try:
                await asyncio.to_thread(self._checkpoint)
            except sqlite3.Error as e:  # the next one will catch up
                log.warning("sqlite checkpoint failed: %s", e)

    def _checkpoint(self) -> None:
        # PASSIVE: copies what it can without waiting for, or blocking, the writer
        with self._checkpoint_lock:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @classmethod
    async def open(cls, url: URL) -> SqliteBackend:
        def migrate() -> None:
            db = url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            try:
                with engine.begin() as conn:
                    upgrade(conn)
            finally:
                engine.dispose()

        await asyncio.to_thread(migrate)
        path = url.database or ""
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=sqlite_ops.Connection
        )
        conn.forget_heads()
        _sqlite_pragmas(conn)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        checkpointer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _sqlite_pragmas(checkpointer)
        return cls(conn, checkpointer, path)

    def write_now(self, fn: Callable[[Any], T]) -> T:
        """One transaction, right now; nothing else can run on the loop meanwhile."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.forget_heads()  # it may remember chain heads of what is rolled back
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def write(self, fn: Callable[[Any], T]) -> T:
        return self.write_now(fn)

    async def read(self, fn: Callable[[Any], T]) -> T:
        return fn(self._conn)

    async def read_aside(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = sqlite3.connect(self._path, isolation_level=None,
                                                   check_same_thread=False)
                    _sqlite_pragmas(self._reader)
                return fn(self._reader)

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        self._checkpoints.cancel()
        await asyncio.gather(self._checkpoints, return_exceptions=True)

        def close_checkpointer() -> None:
            with self._checkpoint_lock:
                self._checkpointer.close()
            with self._reader_lock:  # never under a read still running in its thread
                if self._reader is not None:
                    self._reader.close()

        await asyncio.to_thread(close_checkpointer)
        self._conn.close()  # the last connection to close checkpoints the whole WAL


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

    def __init__(self, engine: AsyncEngine, dsn: str, async_marks: bool) -> None:
        self._engine = engine
        self._dsn = dsn
        self._async_marks = async_marks
        self._writer: asyncpg.Connection | None = None
        self._marker: asyncpg.Connection | None = None

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
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    async def record(self, entries: Sequence[RecordEntry]) -> list[list[OutboxRow]]:
        """``ops.record``, atomically, on the record connection."""
        return await pg_ops.record(await self._connection(marks=False), entries)

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


async def open_backend(url: str, async_marks: bool = False) -> Backend:
    """Connect and migrate; any failure becomes a StoreError that shows no password."""
    scheme, u = parse_url(url)
    try:
        async with _open_lock():
            if scheme == "sqlite":
                return await SqliteBackend.open(u)
            return await PostgresBackend.open(u, async_marks)
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        for secret in sorted(urls.passwords(url), key=len, reverse=True):
            text = text.replace(secret, "***")
        raise StoreError(f"cannot open store {redact(url)}: {text}") from None
