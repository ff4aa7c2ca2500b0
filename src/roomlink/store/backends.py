"""Where store transactions run: a ``sqlite3`` connection, or PostgreSQL (``pg_backend``).

Each backend brings its module of operations with one contract: ``sqlite_ops`` on the
sqlite3 connection, ``pg_queries`` (coroutines) on an asyncpg one. One call of ``write``
is one transaction. asyncpg is imported only by a PostgreSQL store, SQLAlchemy and
Alembic only by a migration (or the record's writes on PostgreSQL): a daemon whose
stores' schema is current never loads them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote

from roomlink.store import sqlite_ops, urls
from roomlink.store.base import OutboxRow, RecordEntry, StoreError
from roomlink.store.migrate import sqlite_is_current, upgrade
from roomlink.store.urls import redact

T = TypeVar("T")

CHECKPOINT_INTERVAL = 1.0  # seconds
# SQLite's search index (migration 0003): what is recorded within INDEX_DELAY is indexed
# together, INDEX_BATCH messages per transaction so that the loop is free in between
INDEX_DELAY = 0.25
INDEX_BATCH = 256

log = logging.getLogger("roomlink.store")

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


# SQLite files are migrated one opener at a time each (others at once, in child processes)
_file_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _file_lock(path: str) -> asyncio.Lock:
    locks = _file_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(str(Path(path).resolve()), asyncio.Lock())


class Backend(Protocol):
    ops: Any  # the module of store operations for this backend's connection type
    dialect: str  # "sqlite" (a sqlite3 connection) or "postgresql" (an asyncpg one)
    @property
    def errors(self) -> tuple[type[BaseException], ...]: ...  # reported as StoreError
    # set when transactions run synchronously on the loop (SQLite): then a single small
    # write need not wait for the group-commit writer
    @property
    def write_now(self) -> Callable[[Callable[[Any], Any]], Any] | None: ...

    async def write(self, fn: Callable[[Any], T]) -> T: ...
    async def read(self, fn: Callable[[Any], T]) -> T: ...
    # a read that may scan much (counts for the status page): never on the loop's connection
    async def read_aside(self, fn: Callable[[Any], T]) -> T: ...
    async def close(self) -> None: ...
    # messages were just recorded (SQLite indexes them for search a moment later)
    def recorded(self) -> None: ...
    # bring the search index up to everything recorded
    async def index_for_search(self) -> None: ...


@runtime_checkable
class FastWrites(Protocol):
    """A backend with its own path for the two hot writes (PostgreSQL), whose writes
    are queued for the Store's writer task."""

    async def write(self, fn: Callable[[Any], Any]) -> Any: ...
    # fn on a SQLAlchemy Core connection (the record's multi-statement writes)
    async def write_core(self, fn: Callable[[Any], T]) -> T: ...

    async def record(self, entries: Sequence[RecordEntry]) -> list[list[OutboxRow]]: ...
    async def mark_delivered_many(
        self, marks: Sequence[tuple[int, Sequence[str]]]
    ) -> list[Exception | None]: ...


_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9]*)(?:\+\w+)?://(?P<rest>.*)$", re.S)


def parse_url(url: str) -> tuple[str, str]:
    """('sqlite', the file's path) or ('postgresql', the URL as given)."""
    m = _SCHEME.match(url)
    scheme = m["scheme"].lower() if m else ""
    if m is not None and scheme == "sqlite":
        rest = m["rest"]
        path = unquote(rest[1:].partition("?")[0]) if rest.startswith("/") else ""
        if not path or path == ":memory:" or path.startswith("file:"):
            raise StoreError(f"a sqlite store must be a file: {redact(url)!r}")
        return "sqlite", path
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
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


def _sqlite_migrate(path: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import URL

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    url = URL.create("sqlite+pysqlite", database=path)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.begin() as conn:
            upgrade(conn)
    finally:
        engine.dispose()


class MigrationFailed(Exception):
    """The child process that migrates a store failed: its one-line reason."""


def child_main(migrate: Callable[[], None]) -> int:
    """A migrating child's body: the reason for a failure as one line on stderr (never a
    traceback full of SQL), and exit status 1."""
    try:
        migrate()
    except Exception as e:
        from roomlink.store.store import describe

        print(describe(e), file=sys.stderr)
        return 1
    return 0


async def migrate_in_child(code: str, *args: str, stdin: bytes | None = None) -> None:
    """Run ``python -c code args`` (which migrates with Alembic and ends in child_main);
    its failure becomes MigrationFailed with the child's one line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await child.communicate(stdin)
    if child.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise MigrationFailed(lines[-1][:300] if lines else f"exit status {child.returncode}")


def migrate_child(path: str) -> int:
    """What the child process of :func:`_sqlite_migrate_lean` runs."""
    return child_main(lambda: _sqlite_migrate(path))


_MIGRATE_CHILD = (
    "import sys; from roomlink.store.backends import migrate_child as m; sys.exit(m(sys.argv[1]))"
)


async def _sqlite_migrate_lean(path: str) -> None:
    """Migrate without loading SQLAlchemy and Alembic into this process for good: in a
    child process, unless they are loaded already (a PostgreSQL store, the tests). They
    would stay for the daemon's lifetime, about 25 MiB of a first start's RSS for a
    schema that is then current (bench/README.md)."""
    if "sqlalchemy" in sys.modules:
        async with _open_lock():
            await asyncio.to_thread(_sqlite_migrate, path)
        return
    await migrate_in_child(_MIGRATE_CHILD, path)


class SqliteBackend:
    """One ``sqlite3`` connection, used inline on the event loop.

    A WAL commit with synchronous=NORMAL does not fsync and takes about 0.1 ms here: less
    than handing the work to a thread and back (bench/README.md). What does fsync is the
    WAL checkpoint, so it runs on a second connection in a thread, never inside a commit
    on the loop. Migrations run through SQLAlchemy and Alembic, at open, and only when
    the file's schema is not at the newest revision (``migrate``).
    """

    ops: Any = sqlite_ops
    dialect = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

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
        self._unindexed = asyncio.Event()
        self._unindexed.set()  # what a previous run recorded and did not index yet
        self._indexer = asyncio.get_running_loop().create_task(self._index_loop())

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            try:
                await asyncio.to_thread(self._checkpoint)
            except sqlite3.Error as e:  # the next one will catch up
                log.warning("sqlite checkpoint failed: %s", e)

    def recorded(self) -> None:
        self._unindexed.set()

    async def _index_loop(self) -> None:
        while True:
            await self._unindexed.wait()
            await asyncio.sleep(INDEX_DELAY)
            self._unindexed.clear()
            try:
                await self.index_for_search()
            except sqlite3.Error as e:  # messages stay recorded; the index catches up later
                log.warning("search indexing failed (%s); trying again", e)
                self._unindexed.set()
                await asyncio.sleep(CHECKPOINT_INTERVAL)

    @staticmethod
    def _index_batch(conn: sqlite3.Connection) -> int:
        return sqlite_ops.index_pending(conn, INDEX_BATCH)

    async def index_for_search(self) -> None:
        full = True
        while full:
            full = self.write_now(self._index_batch) == INDEX_BATCH
            if full:
                await asyncio.sleep(0)  # let deliveries run between two batches

    def _checkpoint(self) -> None:
        # PASSIVE: copies what it can without waiting for, or blocking, the writer
        with self._checkpoint_lock:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @classmethod
    async def open(cls, path: str) -> SqliteBackend:
        async with _file_lock(path):
            if not sqlite_is_current(path):
                await _sqlite_migrate_lean(path)
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
        self._indexer.cancel()
        await asyncio.gather(self._checkpoints, self._indexer, return_exceptions=True)

        def close_checkpointer() -> None:
            with self._checkpoint_lock:
                self._checkpointer.close()
            with self._reader_lock:  # never under a read still running in its thread
                if self._reader is not None:
                    self._reader.close()

        await asyncio.to_thread(close_checkpointer)
        self._conn.close()  # the last connection to close checkpoints the whole WAL


async def open_backend(url: str, async_marks: bool = False) -> Backend:
    """Connect and migrate; any failure becomes a StoreError that shows no password."""
    scheme, target = parse_url(url)
    try:
        if scheme == "sqlite":
            return await SqliteBackend.open(target)
        async with _open_lock():
            from roomlink.store.pg_backend import PostgresBackend

            return await PostgresBackend.open(url, async_marks)
    except StoreError:
        raise
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        for secret in sorted(urls.passwords(url), key=len, reverse=True):
            text = text.replace(secret, "***")
        raise StoreError(f"cannot open store {redact(url)}: {text}") from None
