"""The SQLite engine: the whole store contract on one ``sqlite3`` connection, used
inline on the event loop.

Concurrency: every write is one transaction run to its end on the loop before the call
returns (nothing else on the loop runs meanwhile, so writes never interleave and need no
queue). A WAL commit with synchronous=NORMAL does not fsync and takes about 0.1 ms here:
less than handing the work to a thread and back, and the router already groups what
arrives together into one append (bench/README.md). What does fsync is the WAL
checkpoint, so it runs on a second connection in a thread, never inside a commit on the
loop; reads that may scan a large table (the status page's counts) run on a third, in a
thread (WAL readers do not block the writer). The search index is filled in batches a
moment after each append, by a task of this store. Migrations run at open, and only when
the file's schema is not at the newest revision (``roomlink.store.migrate``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from roomlink.message.model import Message
from roomlink.store import migrate
from roomlink.store.contract import PrefixCheck, Store
from roomlink.store.errors import HeadMoved, StoreError, wrap
from roomlink.store.files import FileKeeper
from roomlink.store.files.folder import FolderFiles
from roomlink.store.sqlite import held_queries as hq
from roomlink.store.sqlite import queries as q
from roomlink.store.sqlite import record_queries as rq
from roomlink.store.urls import redact
from roomlink.store.values import (
    Anchor,
    NewMessage,
    OutboxEntry,
    OutboxRow,
    PipeHead,
    RecordRow,
    RoomCount,
    SearchHit,
)

T = TypeVar("T")

CHECKPOINT_INTERVAL = 1.0  # seconds
# the search index (migration 0003): what is appended within INDEX_DELAY is indexed
# together, INDEX_BATCH messages per transaction so that the loop is free in between
INDEX_DELAY = 0.25
INDEX_BATCH = 256
ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error,)  # reported as StoreError

log = logging.getLogger("roomlink.store")

# SQLite files are migrated one opener at a time each (others at once, in child processes)
_file_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _file_lock(path: str) -> asyncio.Lock:
    locks = _file_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(str(Path(path).resolve()), asyncio.Lock())


class SqliteStore(Store):
    """One party's store in a SQLite file. Build it with ``open_store``."""

    def __init__(self, party: str, url: str, conn: q.Connection,
                 checkpointer: sqlite3.Connection, path: str, files: FileKeeper) -> None:
        self.party = party
        self.files = files
        self.url_for_display = redact(url)
        self._closed = False
        self._conn = conn
        self._checkpointer = checkpointer
        self._path = path
        self._reader: sqlite3.Connection | None = None  # made for the first read aside
        self._reader_lock = threading.Lock()
        # a cancelled to_thread() call leaves its thread running: close() takes this lock
        # so that it never closes the connection under a checkpoint in progress
        self._checkpoint_lock = threading.Lock()
        loop = asyncio.get_running_loop()
        self._checkpoints = loop.create_task(self._checkpoint_loop())
        self._unindexed = asyncio.Event()
        self._unindexed.set()  # what a previous run appended and did not index yet
        self._indexer = loop.create_task(self._index_loop())

    def __repr__(self) -> str:
        return f"<SqliteStore {self.party} {self.url_for_display}>"

    @classmethod
    async def open(cls, party: str, url: str, path: str, files: str | None = None
                   ) -> SqliteStore:
        """``files``: the folder of the party's files; default ``<path>.files``."""
        async with _file_lock(path):
            if not migrate.sqlite_is_current(path):
                await migrate.migrate_sqlite(path)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=q.Connection
        )
        conn.forget_heads()
        migrate.sqlite_pragmas(conn)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        checkpointer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        migrate.sqlite_pragmas(checkpointer)
        # by name, not cls(): so mypy refuses an engine that misses an operation of
        # the contract ("Cannot instantiate abstract class")
        keeper = FolderFiles.open(files or f"{path}.files")
        return SqliteStore(party, url, conn, checkpointer, path, keeper)

    # -- how operations run ---------------------------------------------------------------

    def write_now(self, fn: Callable[[q.Connection], T]) -> T:
        """``fn(connection)`` as one transaction, right now; a driver's error becomes a
        StoreError."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.forget_heads()  # it may remember chain heads of what is rolled back
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except ERRORS as e:
            raise wrap(e, ERRORS) from e
        return result

    def read_now(self, fn: Callable[[q.Connection], T]) -> T:
        """``fn(connection)`` on the loop's connection, outside any write."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        try:
            return fn(self._conn)
        except ERRORS as e:
            raise wrap(e, ERRORS) from e

    async def _read_aside(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read that may scan a large table: on its own connection, in a thread."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")

        def run() -> T:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = sqlite3.connect(self._path, isolation_level=None,
                                                   check_same_thread=False)
                    migrate.sqlite_pragmas(self._reader)
                return fn(self._reader)

        try:
            return await asyncio.to_thread(run)
        except ERRORS as e:
            raise wrap(e, ERRORS) from e

    # -- background work ------------------------------------------------------------------

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

    async def _index_loop(self) -> None:
        while True:
            await self._unindexed.wait()
            await asyncio.sleep(INDEX_DELAY)
            self._unindexed.clear()
            try:
                await self._index_for_search()
            except StoreError as e:  # messages stay stored; the index catches up later
                log.warning("search indexing failed (%s); trying again", e)
                self._unindexed.set()
                await asyncio.sleep(CHECKPOINT_INTERVAL)

    async def _index_for_search(self) -> None:
        """Bring the search index up to every message appended so far."""
        full = True
        while full:
            full = self.write_now(partial(q.index_pending, limit=INDEX_BATCH)) == INDEX_BATCH
            if full:
                await asyncio.sleep(0)  # let deliveries run between two batches

    # -- the message path: writes ---------------------------------------------------------

    def start_append(self, entries: Sequence[NewMessage]) -> asyncio.Future[list[list[OutboxRow]]]:
        entries = tuple(entries)
        if not entries:
            fut: asyncio.Future[list[list[OutboxRow]]] = (
                asyncio.get_running_loop().create_future())
            fut.set_result([])
            return fut
        return self._start(lambda c: q.append(c, entries))

    def start_append_at(
        self, entries: Sequence[NewMessage], expect: Mapping[str, tuple[int, str]]
    ) -> asyncio.Future[list[list[OutboxRow]]]:
        entries, expect = tuple(entries), dict(expect)

        def at(c: q.Connection) -> list[list[OutboxRow]]:
            moved = sorted(p for p, h in expect.items() if q.chain_head(c, p) != tuple(h))
            if moved:
                raise HeadMoved(f"the head of pipe {', '.join(moved)} moved")
            return q.append(c, entries)

        return self._start(at)

    def _start(
        self, write: Callable[[q.Connection], list[list[OutboxRow]]]
    ) -> asyncio.Future[list[list[OutboxRow]]]:
        """An append committed inline, its outcome as a future (``Store.start_append``)."""
        fut: asyncio.Future[list[list[OutboxRow]]] = asyncio.get_running_loop().create_future()
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        try:
            fut.set_result(self.write_now(write))
        except Exception as e:
            fut.set_exception(e)
        self._unindexed.set()
        return fut

    async def pipe_heads(self, pipes: Sequence[str]) -> dict[str, PipeHead]:
        return self.read_now(lambda c: {p: q.pipe_head(c, p) for p in pipes})

    async def append(self, entries: Sequence[NewMessage]) -> list[list[OutboxRow]]:
        return await self.start_append(entries)

    async def forget(self, message_ids: Sequence[str], since: datetime) -> int:
        ids = tuple(message_ids)
        return self.write_now(lambda c: q.forget(c, ids, since))

    async def mark_delivered(self, outbox_id: int, native_ids: Sequence[str]) -> None:
        ids = tuple(native_ids)
        self.write_now(lambda c: q.mark_delivered(c, outbox_id, ids))

    async def mark_failed(self, outbox_id: int, error: str, attempts: int) -> None:
        self.write_now(lambda c: q.mark_failed(c, outbox_id, error, attempts))

    async def note_attempt(self, outbox_id: int, error: str, attempts: int) -> None:
        self.write_now(lambda c: q.note_attempt(c, outbox_id, error, attempts))

    async def set_cursor(self, connector: str, key: str, value: str) -> None:
        self.write_now(lambda c: q.set_cursor(c, connector, key, value))

    async def retry_failed(
        self, connector: str | None = None, room: str | None = None,
        message_id: str | None = None,
    ) -> int:
        return self.write_now(lambda c: q.retry_failed(c, connector, room, message_id))

    # -- the message path: reads ----------------------------------------------------------

    async def pending(
        self, connector: str, room: str, after_id: int = 0, limit: int = 256
    ) -> list[OutboxRow]:
        return self.read_now(lambda c: q.pending(c, connector, room, after_id, limit))

    async def native_id(self, message_id: str, connector: str, room: str) -> str | None:
        return self.read_now(lambda c: q.native_id(c, message_id, connector, room))

    async def message_id_for_native(self, connector: str, room: str, native_id: str) -> str | None:
        return self.read_now(lambda c: q.message_id_for_native(c, connector, room, native_id))

    async def get_cursor(self, connector: str, key: str) -> str | None:
        return self.read_now(lambda c: q.get_cursor(c, connector, key))

    async def get_message(self, message_id: str) -> Message | None:
        return self.read_now(lambda c: q.get_message(c, message_id))

    async def hold(self, connector: str, room: str, messages: Sequence[Message]) -> None:
        self.write_now(lambda c: hq.hold(c, connector, room, messages))

    async def held(self, connector: str, after: int = 0, limit: int = 256
                   ) -> list[tuple[int, str, Message]]:
        return self.read_now(lambda c: hq.held(c, connector, after, limit))

    async def release(self, message_ids: Sequence[str]) -> None:
        self.write_now(lambda c: hq.release(c, message_ids))

    async def held_message(self, message_id: str) -> Message | None:
        return self.read_now(lambda c: hq.held_message(c, message_id))

    async def held_counts(self) -> dict[str, int]:
        return self.read_now(hq.held_counts)

    async def delivered_after(
        self, connector: str, room: str, message_id: str, limit: int = 1000
    ) -> list[Message] | None:
        return self.read_now(lambda c: q.delivered_after(c, connector, room, message_id, limit))

    async def messages(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Message]]:
        return self.read_now(lambda c: q.list_messages(c, pipe, after_seq, limit))

    # -- for operators --------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        return await self._read_aside(q.counts)

    async def outbox_entries(
        self, state: str | None = None, connector: str | None = None, room: str | None = None,
        message_id: str | None = None, limit: int = 1000, newest_first: bool = False,
    ) -> list[OutboxEntry]:
        return await self._read_aside(lambda c: q.outbox_entries(
            c, state, connector, room, message_id, limit, newest_first))

    async def room_counts(self) -> list[RoomCount]:
        return await self._read_aside(q.room_counts)

    async def pending_heads(self) -> dict[tuple[str, str], int]:
        return self.read_now(q.pending_heads)

    async def size_bytes(self) -> int:
        return await self._read_aside(q.size_bytes)

    # -- the party's record ---------------------------------------------------------------

    async def pipes(self) -> list[str]:
        return self.read_now(rq.pipes)

    async def anchors(self) -> dict[str, Anchor]:
        return self.read_now(rq.anchors)

    async def record_size(self, pipe: str | None = None) -> int:
        return self.read_now(lambda c: rq.record_size(c, pipe))

    async def record_row(self, message_id: str) -> RecordRow | None:
        return self.read_now(lambda c: rq.record_row(c, message_id))

    async def record_page(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[RecordRow]:
        return self.read_now(lambda c: rq.record_page(c, pipe, after_seq, limit))

    async def record_tail(self, pipe: str, limit: int) -> list[RecordRow]:
        return self.read_now(lambda c: rq.record_tail(c, pipe, limit))

    async def chain_heads(self) -> dict[str, tuple[int, str]]:
        return self.read_now(rq.chain_heads)

    async def search(
        self, words: Sequence[str], pipe: str | None = None, author: str | None = None,
        since: datetime | None = None, limit: int = 50,
    ) -> list[SearchHit]:
        await self._index_for_search()  # what was appended in the last moment
        return self.read_now(lambda c: rq.search(c, words, pipe, author, since, limit))

    async def cut_prefix(
        self, pipe: str, cutoff: datetime, limit: int, check: PrefixCheck
    ) -> int:
        return self.write_now(lambda c: rq.cut_prefix(c, pipe, cutoff, limit, check))

    # -- files --------------------------------------------------------------------------

    async def file_id(self, sha256: str) -> str:
        return self.write_now(lambda c: q.file_id(c, sha256))

    async def file_by_id(self, file_id: str) -> str | None:
        return self.read_now(lambda c: q.file_by_id(c, file_id))

    async def file_refs(self) -> set[str]:
        return await self._read_aside(q.file_refs)

    async def forget_file_ids(self, sha256s: Sequence[str]) -> None:
        digests = tuple(sha256s)
        self.write_now(lambda c: q.forget_file_ids(c, digests))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.files.close()
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

