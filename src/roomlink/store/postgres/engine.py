"""The PostgreSQL engine: the whole store contract on asyncpg.

Concurrency: every write goes through one writer task per store (``write_queue``), in
order, on one connection, group-committed: a run of appends queued together is one
statement. Delivery marks have a connection and a lane of their own, every mark that is
ready in one statement. Reads run at once on a pool of two connections, beside the
writes. SQLAlchemy and Alembic (about 21 MiB of a daemon, and part of its start-up) are
loaded only to migrate a store that is not at the newest revision (by a child process,
unless they are loaded already); a version check tells a current store
(``roomlink.store.migrate``, bench/README.md).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from roomlink.message.model import Message, utcnow
from roomlink.store import migrate
from roomlink.store.contract import PrefixCheck, Store
from roomlink.store.errors import StoreError, wrap
from roomlink.store.files import FileKeeper
from roomlink.store.files.folder import FolderFiles
from roomlink.store.files.pgchunks import ChunkFiles
from roomlink.store.postgres import held_queries as hq
from roomlink.store.postgres import leases, writes
from roomlink.store.postgres import queries as q
from roomlink.store.postgres import record_queries as rq
from roomlink.store.postgres.write_queue import GroupCommit
from roomlink.store.urls import connect_args, redact
from roomlink.store.values import (
    FAILED,
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


class PostgresStore(GroupCommit, Store):
    """One party's store in a PostgreSQL database. Build it with ``open_store``.

    asyncpg all the way: a connection for appends and every other write, one for
    delivery marks, and a pool of two for reads. With ``async_marks``, the marks
    connection runs with ``synchronous_commit = off``: a mark is visible at once and
    survives a crash of roomlink, but a crash of the PostgreSQL server itself can lose
    the marks of its last moments (up to about three times ``wal_writer_delay``), and
    those copies are then sent again after the restart (never lost). An append always
    waits for the server's flush.
    """

    def __init__(
        self, party: str, url: str, connect: dict[str, Any], pool: asyncpg.Pool,
        async_marks: bool, files: str | None = None,
    ) -> None:
        self.party = party
        # a folder when the party sets one, else the database's file_chunks
        self.files: FileKeeper = (
            FolderFiles.open(files) if files else ChunkFiles(connect, pool)
        )
        self.url_for_display = redact(url)
        self._closed = False
        self._connect = connect  # connect_args(url)
        self._pool = pool
        self._async_marks = async_marks
        self._write_conn: asyncpg.Connection | None = None
        self._mark_conn: asyncpg.Connection | None = None
        self._heads = writes.Heads()  # what the writing connection chained on last
        self._fence: leases.Fence | None = None  # set when replicas share the store
        self._start_queue()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.party} {self.url_for_display}>"

    @classmethod
    async def open(cls, party: str, url: str, async_marks: bool = False,
                   files: str | None = None) -> PostgresStore:
        args = connect_args(url)
        pool = await asyncpg.create_pool(**args, min_size=1, max_size=2, timeout=10)
        try:
            async with pool.acquire() as conn:
                current = await migrate.pg_is_current(conn)
            if not current:
                await migrate.migrate_postgres(url)
        except BaseException:
            await pool.close()
            raise
        # by name, not cls(): so mypy refuses an engine that misses an operation of
        # the contract ("Cannot instantiate abstract class")
        store = PostgresStore(party, url, args, pool, async_marks, files)
        try:
            await store._connection(marks=False)
            await store._connection(marks=True)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        """asyncpg's errors, a server that cannot be reached (a read's pool reconnects),
        and SQLAlchemy's once something has loaded it (a migration)."""
        sa = sys.modules.get("sqlalchemy")
        own: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError
        )
        return own if sa is None else (*own, sa.exc.SQLAlchemyError)

    def share(self, fence: leases.Fence) -> None:
        """Other replicas write to this store too (``cluster.enabled``): the writes of a
        connector are fenced by its lease, and a pipe's chain head is looked up at every
        append (another replica may have appended since; the cluster's pipe lock keeps
        appends of one pipe apart)."""
        self._fence = fence

    # -- how operations run ---------------------------------------------------------------

    async def _connection(self, *, marks: bool) -> asyncpg.Connection:
        """A hot-path connection, reconnected when the server dropped it."""
        conn = self._mark_conn if marks else self._write_conn
        if conn is not None and not conn.is_closed():
            return conn
        settings = {"synchronous_commit": "off"} if marks and self._async_marks else None
        conn = await asyncpg.connect(**self._connect, timeout=10, server_settings=settings)
        if marks:
            self._mark_conn = conn
        else:
            self._write_conn = conn
        return conn

    async def _append_now(self, entries: Sequence[NewMessage]) -> list[list[OutboxRow]]:
        """An append, atomically, on the writing connection (the write queue's)."""
        conn = await self._connection(marks=False)
        if self._fence is not None:  # replicas: after the others' appends of the pipe
            return await writes.append_at(conn, entries, None)
        return await writes.append(conn, entries, self._heads)

    async def _write_now(self, fn: Callable[[asyncpg.Connection], Any]) -> Any:
        """``fn(connection)`` in a transaction on the writing connection (the write
        queue's)."""
        conn = await self._connection(marks=False)
        try:
            async with conn.transaction():
                result = fn(conn)
                return await result if inspect.isawaitable(result) else result
        finally:  # it may have added or removed messages: heads are looked up again
            self._heads.forget()

    async def _mark_now(
        self, marks: Sequence[tuple[int, Sequence[str]]]
    ) -> list[Exception | None]:
        conn = await self._connection(marks=True)
        if self._fence is not None:
            return await leases.fenced_marks(conn, marks, self._fence)
        return await writes.mark_delivered_many(conn, marks)

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        result: T = await self._submit(fn)
        return result

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except self._errors as e:
            raise wrap(e, self._errors) from e

    # -- the message path: writes (mark_delivered: GroupCommit) ---------------------------

    def start_append(self, entries: Sequence[NewMessage]) -> asyncio.Future[list[list[OutboxRow]]]:
        entries = tuple(entries)
        if not entries:
            done: asyncio.Future[list[list[OutboxRow]]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        return self._submit_append(entries)

    def start_append_at(
        self, entries: Sequence[NewMessage], expect: Mapping[str, tuple[int, str]]
    ) -> asyncio.Future[list[list[OutboxRow]]]:
        entries, expect = tuple(entries), dict(expect)
        return self._submit(lambda c: writes.append_at(c, entries, expect))

    async def pipe_heads(self, pipes: Sequence[str]) -> dict[str, PipeHead]:
        return await self._read(lambda c: writes.heads(c, pipes))

    async def append(self, entries: Sequence[NewMessage]) -> list[list[OutboxRow]]:
        return await self.start_append(entries)

    async def forget(self, message_ids: Sequence[str], since: datetime) -> int:
        ids = tuple(message_ids)
        return await self._write(lambda c: q.forget(c, ids, since))

    async def mark_failed(self, outbox_id: int, error: str, attempts: int) -> None:
        fence = self._fence
        if fence is not None:
            await self._write(lambda c: leases.fenced_outbox_update(
                c, outbox_id, "state = $2, last_error = $3, attempts = $4, done_at = $5",
                fence, FAILED, error, attempts, utcnow()))
            return
        await self._write(lambda c: q.mark_failed(c, outbox_id, error, attempts))

    async def note_attempt(self, outbox_id: int, error: str, attempts: int) -> None:
        fence = self._fence
        if fence is not None:
            await self._write(lambda c: leases.fenced_outbox_update(
                c, outbox_id, "last_error = $2, attempts = $3", fence, error, attempts))
            return
        await self._write(lambda c: q.note_attempt(c, outbox_id, error, attempts))

    async def set_cursor(self, connector: str, key: str, value: str) -> None:
        fence = self._fence
        if fence is not None and connector in fence.guarded:
            await self._write(lambda c: leases.fenced_cursor(c, connector, key, value, fence))
            return
        await self._write(lambda c: q.set_cursor(c, connector, key, value))

    async def retry_failed(
        self, connector: str | None = None, room: str | None = None,
        message_id: str | None = None,
    ) -> int:
        return await self._write(lambda c: q.retry_failed(c, connector, room, message_id))

    # -- the message path: reads ----------------------------------------------------------

    async def pending(
        self, connector: str, room: str, after_id: int = 0, limit: int = 256
    ) -> list[OutboxRow]:
        return await self._read(lambda c: q.pending(c, connector, room, after_id, limit))

    async def native_id(self, message_id: str, connector: str, room: str) -> str | None:
        return await self._read(lambda c: q.native_id(c, message_id, connector, room))

    async def message_id_for_native(self, connector: str, room: str, native_id: str) -> str | None:
        return await self._read(lambda c: q.message_id_for_native(c, connector, room, native_id))

    async def get_cursor(self, connector: str, key: str) -> str | None:
        return await self._read(lambda c: q.get_cursor(c, connector, key))

    async def get_message(self, message_id: str) -> Message | None:
        return await self._read(lambda c: q.get_message(c, message_id))

    async def hold(self, connector: str, room: str, messages: Sequence[Message]) -> None:
        await self._write(lambda c: hq.hold(c, connector, room, messages))

    async def held(self, connector: str, after: int = 0, limit: int = 256
                   ) -> list[tuple[int, str, Message]]:
        return await self._read(lambda c: hq.held(c, connector, after, limit))

    async def release(self, message_ids: Sequence[str]) -> None:
        await self._write(lambda c: hq.release(c, message_ids))

    async def held_message(self, message_id: str) -> Message | None:
        return await self._read(lambda c: hq.held_message(c, message_id))

    async def held_counts(self) -> dict[str, int]:
        return await self._read(hq.held_counts)

    async def delivered_after(
        self, connector: str, room: str, message_id: str, limit: int = 1000
    ) -> list[Message] | None:
        return await self._read(
            lambda c: q.delivered_after(c, connector, room, message_id, limit))

    async def messages(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Message]]:
        return await self._read(lambda c: q.list_messages(c, pipe, after_seq, limit))

    # -- for operators (the server does the scanning: no need to keep it off the loop) ----

    async def counts(self) -> dict[str, int]:
        return await self._read(q.counts)

    async def outbox_entries(
        self, state: str | None = None, connector: str | None = None, room: str | None = None,
        message_id: str | None = None, limit: int = 1000, newest_first: bool = False,
    ) -> list[OutboxEntry]:
        return await self._read(lambda c: q.outbox_entries(
            c, state, connector, room, message_id, limit, newest_first))

    async def room_counts(self) -> list[RoomCount]:
        return await self._read(q.room_counts)

    async def pending_heads(self) -> dict[tuple[str, str], int]:
        return await self._read(q.pending_heads)

    async def size_bytes(self) -> int:
        return await self._read(q.size_bytes)

    # -- the party's record ---------------------------------------------------------------

    async def pipes(self) -> list[str]:
        return await self._read(rq.pipes)

    async def anchors(self) -> dict[str, Anchor]:
        return await self._read(rq.anchors)

    async def record_size(self, pipe: str | None = None) -> int:
        return await self._read(lambda c: rq.record_size(c, pipe))

    async def record_row(self, message_id: str) -> RecordRow | None:
        return await self._read(lambda c: rq.record_row(c, message_id))

    async def record_page(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[RecordRow]:
        return await self._read(lambda c: rq.record_page(c, pipe, after_seq, limit))

    async def record_tail(self, pipe: str, limit: int) -> list[RecordRow]:
        return await self._read(lambda c: rq.record_tail(c, pipe, limit))

    async def chain_heads(self) -> dict[str, tuple[int, str]]:
        return await self._read(rq.chain_heads)

    async def search(
        self, words: Sequence[str], pipe: str | None = None, author: str | None = None,
        since: datetime | None = None, limit: int = 50,
    ) -> list[SearchHit]:
        return await self._read(lambda c: rq.search(c, words, pipe, author, since, limit))

    async def cut_prefix(
        self, pipe: str, cutoff: datetime, limit: int, check: PrefixCheck
    ) -> int:
        return await self._write(lambda c: rq.cut_prefix(c, pipe, cutoff, limit, check))

    # -- files --------------------------------------------------------------------------

    async def file_id(self, sha256: str) -> str:
        return await self._write(lambda c: rq.file_id(c, sha256))

    async def file_by_id(self, file_id: str) -> str | None:
        return await self._read(lambda c: rq.file_by_id(c, file_id))

    async def file_refs(self) -> set[str]:
        return await self._read(rq.file_refs)

    async def forget_file_ids(self, sha256s: Sequence[str]) -> None:
        digests = list(sha256s)
        await self._write(lambda c: rq.forget_file_ids(c, digests))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.files.close()
        await self._close_queue()
        for conn in (self._write_conn, self._mark_conn):
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except (OSError, TimeoutError, asyncpg.InterfaceError):
                    conn.terminate()
        try:
            await asyncio.wait_for(self._pool.close(), 5)
        except (OSError, TimeoutError, asyncpg.InterfaceError):
            self._pool.terminate()
