"""The Store: a party's database behind one group-committing writer task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from roomlink.message.model import Message
from roomlink.store.backends import Backend, FastWrites, open_backend
from roomlink.store.base import OutboxEntry, OutboxRow, RecordEntry, RoomCount, StoreError
from roomlink.store.urls import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_BATCH = 4096  # operations per group-committed transaction


@dataclass(slots=True)
class _Op:
    """One queued write: ``fn`` alone, or (when ``entries`` is set) a mergeable record().

    Only PostgreSQL stores queue writes: SQLite commits inline (``Store._submit``).
    """

    fn: Callable[[Any], Any]
    future: asyncio.Future[Any]
    entries: Sequence[RecordEntry] | None = None
    core: bool = False  # fn takes a SQLAlchemy Core connection (Store.write_with)


@dataclass(slots=True)
class _Mark:
    outbox_id: int
    native_ids: tuple[str, ...]
    future: asyncio.Future[None]


def _split(ops: Sequence[_Op], rows: list[list[OutboxRow]]) -> list[list[list[OutboxRow]]]:
    """The merged record() result cut back into one result per op."""
    out, pos = [], 0
    for op in ops:
        size = len(op.entries or ())
        out.append(rows[pos : pos + size])
        pos += size
    return out


def describe(e: BaseException) -> str:
    """What went wrong, for logs and errors: the driver's first line, never the SQL
    parameters (other people's messages and names) that SQLAlchemy adds to its text."""
    sa = sys.modules.get("sqlalchemy")  # not loaded: then no error can be one of its own
    statement_error = sa.exc.StatementError if sa is not None else ()
    orig = e.orig if isinstance(e, statement_error) else None
    inner: BaseException = orig if isinstance(orig, BaseException) else e
    if isinstance(inner, statement_error):
        text = str(inner.args[0]) if inner.args else ""  # the message alone, no SQL
    else:
        text = str(inner)
    first = text.strip().splitlines()[0] if text.strip() else ""
    # asyncpg quotes the offending value after the argument's number: keep the number only
    first = re.sub(r"^(invalid input for query argument \$\d+).*", r"\1", first)
    return f"{type(inner).__name__}: {first[:200]}"


def _wrap(e: BaseException, errors: tuple[type[BaseException], ...]) -> BaseException:
    if isinstance(e, errors):
        err = StoreError(describe(e))
        err.__cause__ = e
        return err
    return e


class Store:
    """One party's store. Build it with :func:`open_store`; all methods are coroutine-safe."""

    def __init__(self, party: str, url: str, backend: Backend) -> None:
        self.party = party
        self.url_for_display = redact(url)
        self._backend = backend
        self._ops = backend.ops
        self._queue: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._closed = False
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name=f"roomlink-store-writer[{party}]")
        # PostgreSQL: record() and delivery marks on asyncpg directly, the marks in a lane
        # of their own, every mark that is ready in one statement (group commit across rooms)
        self._pg = backend if isinstance(backend, FastWrites) else None
        self._marks: asyncio.Queue[_Mark | None] = asyncio.Queue()
        self._marking = asyncio.Lock()  # one statement at a time on the marks connection
        self._marker = (
            loop.create_task(self._mark_loop(), name=f"roomlink-store-marks[{party}]")
            if self._pg is not None
            else None
        )

    def __repr__(self) -> str:
        return f"<Store {self.party} {self.url_for_display}>"

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        return self._backend.errors  # PostgreSQL's grow once SQLAlchemy is loaded

    # -- writing ------------------------------------------------------------------------

    def _submit(
        self, fn: Callable[[Any], T], entries: Sequence[RecordEntry] | None = None,
        core: bool = False,
    ) -> asyncio.Future[T]:
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        write_now = self._backend.write_now
        if write_now is not None:
            # SQLite commits inline on the loop: the router already groups what arrives
            # together into one record() call, and committing now saves the caller a round
            # trip through the writer task (bench/README.md)
            try:
                fut.set_result(write_now(fn))
            except Exception as e:
                fut.set_exception(_wrap(e, self._errors))
            return fut
        self._queue.put_nowait(_Op(fn, fut, entries, core))
        return fut

    async def _write_loop(self) -> None:
        """PostgreSQL's writes, in order: what is queued together goes together."""
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            ops = [first]
            while len(ops) < _MAX_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                ops.append(nxt)
            i = 0
            while i < len(ops):  # each run of record() calls is one statement
                j = i + 1
                while ops[i].entries is not None and j < len(ops) and ops[j].entries is not None:
                    j += 1
                await self._commit(ops[i:j])
                i = j

    async def _run(self, ops: list[_Op]) -> list[Any]:
        assert self._pg is not None
        if ops[0].entries is not None:
            merged = [e for op in ops for e in op.entries or ()]
            return _split(ops, await self._pg.record(merged))
        (op,) = ops
        if op.core:
            return [await self._pg.write_core(op.fn)]
        return [await self._pg.write(op.fn)]

    async def _commit(self, ops: list[_Op]) -> None:
        try:
            results = await self._run(ops)
        except Exception as e:
            if len(ops) == 1:
                _settle(ops[0].future, exc=_wrap(e, self._errors))
                return
            log.warning(
                "store %s: batch of %d failed (%s); retrying one by one",
                self.party,
                len(ops),
                describe(e),
            )
            for op in ops:
                await self._commit([op])
            return
        for op, result in zip(ops, results, strict=True):
            _settle(op.future, result=result)

    async def _mark_loop(self) -> None:
        assert self._pg is not None
        stop = False
        while not stop:
            first = await self._marks.get()
            if first is None:
                break
            async with self._marking:
                batch = [first]
                while len(batch) < _MAX_BATCH and not self._marks.empty():
                    nxt = self._marks.get_nowait()
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                await self._commit_marks(batch)

    async def _commit_marks(self, batch: list[_Mark]) -> None:
        assert self._pg is not None
        try:
            outcomes = await self._pg.mark_delivered_many([(m.outbox_id, m.native_ids)
                                                            for m in batch])
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, exc=_wrap(e, self._errors))
                return
            for mark in batch:  # find the one that failed; the others go through
                await self._commit_marks([mark])
            return
        for mark, exc in zip(batch, outcomes, strict=True):
            _settle(mark.future, exc=exc)

    async def close(self) -> None:
        """Finish every queued write, then release connections and the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        self._marks.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._writer
        if self._marker is not None:
            with contextlib.suppress(Exception):
                await self._marker
            async with self._marking:  # a mark committed by its caller may be in flight
                pass
        await self._backend.close()

    async def record(self, entries: Sequence[RecordEntry]) -> list[list[OutboxRow]]:
        """Record messages and their outbox rows in one group-committed transaction.

        An entry whose message id is already stored (or earlier in the same call) inserts
        nothing and gets ``[]``; every other entry gets its new outbox rows, in order.
        """
        return await self.start_record(entries)

    def start_record(self, entries: Sequence[RecordEntry]) -> asyncio.Future[list[list[OutboxRow]]]:
        """:meth:`record`, begun now: a future of its result (already done on SQLite), so that
        a caller can write to several stores at once without a task for each."""
        entries = tuple(entries)
        if not entries:
            done: asyncio.Future[list[list[OutboxRow]]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        started = self._submit(lambda c: self._ops.record(c, entries), entries)
        self._backend.recorded()
        return started

    async def forget(self, message_ids: Sequence[str], since: datetime) -> int:
        """Undo recording these messages where it happened at or after ``since`` (they must
        be the newest in this store): how a batch another store refused is taken back."""
        ids = tuple(message_ids)
        removed: int = await self._submit(lambda c: self._ops.forget(c, ids, since))
        return removed

    async def mark_delivered(self, outbox_id: int, native_ids: Sequence[str]) -> None:
        ids = tuple(native_ids)
        if self._pg is None:
            await self._submit(lambda c: self._ops.mark_delivered(c, outbox_id, ids))
            return
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mark = _Mark(outbox_id, ids, fut)
        if self._marks.empty() and not self._marking.locked():
            # the lane is idle: commit this mark now rather than wake the lane's task
            # (a task switch each way in a room's send -> mark -> send chain)
            async with self._marking:
                await self._commit_marks([mark])
        else:
            self._marks.put_nowait(mark)
        await fut

    async def mark_failed(self, outbox_id: int, error: str, attempts: int) -> None:
        await self._submit(lambda c: self._ops.mark_failed(c, outbox_id, error, attempts))

    async def note_attempt(self, outbox_id: int, error: str, attempts: int) -> None:
        await self._submit(lambda c: self._ops.note_attempt(c, outbox_id, error, attempts))

    async def set_cursor(self, connector: str, key: str, value: str) -> None:
        await self._submit(lambda c: self._ops.set_cursor(c, connector, key, value))

    async def retry_failed(
        self, connector: str | None = None, room: str | None = None,
        message_id: str | None = None,
    ) -> int:
        """Make failed copies pending again (fresh retry budget); return how many."""
        count: int = await self._submit(
            lambda c: self._ops.retry_failed(c, connector, room, message_id)
        )
        return count

    # -- reading (bypasses the queue) ---------------------------------------------------

    async def _read(self, fn: Callable[[Any], T]) -> T:
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        try:
            return await self._backend.read(fn)
        except self._errors as e:
            raise _wrap(e, self._errors) from e

    async def _read_aside(self, fn: Callable[[Any], T]) -> T:
        """A read that may scan a large table, kept off the event loop's connection."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        try:
            return await self._backend.read_aside(fn)
        except self._errors as e:
            raise _wrap(e, self._errors) from e

    async def pending(
        self, connector: str, room: str, after_id: int = 0, limit: int = 256
    ) -> list[OutboxRow]:
        rows: list[OutboxRow] = await self._read(
            lambda c: self._ops.pending(c, connector, room, after_id, limit)
        )
        return rows

    async def native_id(self, message_id: str, connector: str, room: str) -> str | None:
        """The platform id the copy of ``message_id`` got in that room (or had there)."""
        found: str | None = await self._read(
            lambda c: self._ops.native_id(c, message_id, connector, room)
        )
        return found

    async def message_id_for_native(self, connector: str, room: str, native_id: str) -> str | None:
        found: str | None = await self._read(
            lambda c: self._ops.message_id_for_native(c, connector, room, native_id)
        )
        return found

    async def get_cursor(self, connector: str, key: str) -> str | None:
        found: str | None = await self._read(lambda c: self._ops.get_cursor(c, connector, key))
        return found

    async def get_message(self, message_id: str) -> Message | None:
        found: Message | None = await self._read(lambda c: self._ops.get_message(c, message_id))
        return found

    async def delivered_after(
        self, connector: str, room: str, message_id: str, limit: int = 1000
    ) -> list[Message] | None:
        """What the room got after ``message_id``, in order; None if that id is unknown."""
        found: list[Message] | None = await self._read(
            lambda c: self._ops.delivered_after(c, connector, room, message_id, limit)
        )
        return found

    async def messages(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Message]]:
        found: list[tuple[int, Message]] = await self._read(
            lambda c: self._ops.list_messages(c, pipe, after_seq, limit)
        )
        return found

    # -- for roomlink.record: its own queries on this store's connection -----------------

    async def index_for_search(self) -> None:
        """Make the search index hold every message recorded so far (SQLite indexes in
        batches a moment after recording)."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        try:
            await self._backend.index_for_search()
        except self._errors as e:
            raise _wrap(e, self._errors) from e

    @property
    def dialect(self) -> str:
        """"sqlite" (functions get a sqlite3 connection) or "postgresql" (see below)."""
        return self._backend.dialect

    async def read_with(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(connection)`` outside the write queue (reads only). On PostgreSQL the
        connection is asyncpg's, and what ``fn`` returns may be awaitable."""
        return await self._read(fn)

    async def write_with(self, fn: Callable[[Any], T]) -> T:
        """``fn(connection)`` in one write transaction, in order with every other write;
        on PostgreSQL a SQLAlchemy Core connection (loaded for it)."""
        return await self._submit(fn, core=True)

    async def counts(self) -> dict[str, int]:
        found: dict[str, int] = await self._read_aside(self._ops.counts)
        return found

    async def outbox_entries(
        self, state: str | None = None, connector: str | None = None, room: str | None = None,
        message_id: str | None = None, limit: int = 1000, newest_first: bool = False,
    ) -> list[OutboxEntry]:
        """Copies in outbox order (oldest first unless ``newest_first``), filtered."""
        found: list[OutboxEntry] = await self._read_aside(
            lambda c: self._ops.outbox_entries(
                c, state, connector, room, message_id, limit, newest_first
            )
        )
        return found

    async def room_counts(self) -> list[RoomCount]:
        """Pending and failed copies per pipe and room."""
        found: list[RoomCount] = await self._read_aside(self._ops.room_counts)
        return found

    async def pending_heads(self) -> dict[tuple[str, str], int]:
        """(connector, room) -> the id of its oldest pending copy."""
        found: dict[tuple[str, str], int] = await self._read(self._ops.pending_heads)
        return found

    async def size_bytes(self) -> int:
        found: int = await self._read_aside(self._ops.size_bytes)
        return found


def _settle(
    fut: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if fut.done():  # the caller was cancelled; the write happened (or failed) anyway
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


async def open_store(party: str, url: str, *, async_delivery_marks: bool = False) -> Store:
    """Open (creating and migrating as needed) the store at ``url`` for ``party``.

    ``sqlite:///PATH`` or ``postgresql://user:pass@host:port/db`` (also ``postgres://``).
    Raises StoreError, whose text never contains the password, if it cannot be opened.
    ``async_delivery_marks`` (PostgreSQL only): commit delivery marks without waiting
    for the server's disk flush (see ``PostgresBackend``).
    """
    backend = await open_backend(url, async_delivery_marks)
    return Store(party, url, backend)
