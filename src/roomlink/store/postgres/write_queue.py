"""The PostgreSQL engine's writes: in order through one writer task, group-committed.

What is queued together commits together: a run of appends (from any number of rooms
and pipes) becomes one statement, and so does every delivery mark that is ready, in a
lane of its own (so that a room's next send never waits behind another group's append
commit; bench/README.md). A batch that fails is retried one write at a time, so that
one bad write fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from roomlink.store.errors import StoreError, describe, wrap
from roomlink.store.values import NewMessage, OutboxRow

log = logging.getLogger("roomlink.store")

T = TypeVar("T")

_MAX_BATCH = 4096  # operations per group-committed transaction


@dataclass(slots=True)
class _Queued:
    """One queued write: ``fn`` alone, or (when ``entries`` is set) a mergeable append."""

    fn: Callable[[asyncpg.Connection], Any] | None
    future: asyncio.Future[Any]
    entries: Sequence[NewMessage] | None = None


@dataclass(slots=True)
class _Mark:
    outbox_id: int
    native_ids: tuple[str, ...]
    future: asyncio.Future[None]


def _split(batch: Sequence[_Queued], rows: list[list[OutboxRow]]) -> list[list[list[OutboxRow]]]:
    """The merged append's result cut back into one result per queued append."""
    out, pos = [], 0
    for queued in batch:
        size = len(queued.entries or ())
        out.append(rows[pos : pos + size])
        pos += size
    return out


def _settle(
    fut: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if fut.done():  # the caller was cancelled; the write happened (or failed) anyway
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class GroupCommit:
    """The write queue and the marks lane of ``engine.PostgresStore``, which brings the
    three ways a write reaches the server (``_append_now``, ``_write_now``, ``_mark_now``)."""

    party: str
    _closed: bool

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    async def _append_now(self, entries: Sequence[NewMessage]) -> list[list[OutboxRow]]:
        raise NotImplementedError

    async def _write_now(self, fn: Callable[[asyncpg.Connection], Any]) -> Any:
        raise NotImplementedError

    async def _mark_now(
        self, marks: Sequence[tuple[int, Sequence[str]]]
    ) -> list[Exception | None]:
        raise NotImplementedError

    def _start_queue(self) -> None:
        self._queue: asyncio.Queue[_Queued | None] = asyncio.Queue()
        self._marks: asyncio.Queue[_Mark | None] = asyncio.Queue()
        self._marking = asyncio.Lock()  # one statement at a time on the marks connection
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(),
                                        name=f"roomlink-store-writer[{self.party}]")
        self._marker = loop.create_task(self._mark_loop(),
                                        name=f"roomlink-store-marks[{self.party}]")

    def _submit(self, fn: Callable[[asyncpg.Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``fn(connection)``, to run in a transaction of its own."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Queued(fn, fut))
        return fut

    def _submit_append(self, entries: Sequence[NewMessage]) -> asyncio.Future[Any]:
        """Queue an append, to be merged with the appends queued beside it."""
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Queued(None, fut, entries))
        return fut

    async def _write_loop(self) -> None:
        """The writes, in order: what is queued together goes together."""
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            i = 0
            while i < len(batch):  # each run of appends is one statement
                j = i + 1
                while (batch[i].entries is not None and j < len(batch)
                       and batch[j].entries is not None):
                    j += 1
                await self._commit(batch[i:j])
                i = j

    async def _run(self, batch: list[_Queued]) -> list[Any]:
        if batch[0].entries is not None:
            merged = [e for queued in batch for e in queued.entries or ()]
            return _split(batch, await self._append_now(merged))
        (queued,) = batch
        assert queued.fn is not None
        return [await self._write_now(queued.fn)]

    async def _commit(self, batch: list[_Queued]) -> None:
        try:
            results = await self._run(batch)
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, exc=wrap(e, self._errors))
                return
            log.warning(
                "store %s: batch of %d failed (%s); retrying one by one",
                self.party,
                len(batch),
                describe(e),
            )
            for queued in batch:
                await self._commit([queued])
            return
        for queued, result in zip(batch, results, strict=True):
            _settle(queued.future, result=result)

    async def mark_delivered(self, outbox_id: int, native_ids: Sequence[str]) -> None:
        if self._closed:
            raise StoreError(f"store {self.party} is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mark = _Mark(outbox_id, tuple(native_ids), fut)
        if self._marks.empty() and not self._marking.locked():
            # the lane is idle: commit this mark now rather than wake the lane's task
            # (a task switch each way in a room's send -> mark -> send chain)
            async with self._marking:
                await self._commit_marks([mark])
        else:
            self._marks.put_nowait(mark)
        await fut

    async def _mark_loop(self) -> None:
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
        try:
            outcomes = await self._mark_now([(m.outbox_id, m.native_ids) for m in batch])
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, exc=wrap(e, self._errors))
                return
            for mark in batch:  # find the one that failed; the others go through
                await self._commit_marks([mark])
            return
        for mark, exc in zip(batch, outcomes, strict=True):
            _settle(mark.future, exc=exc)

    async def _close_queue(self) -> None:
        """Finish every queued write and mark."""
        self._queue.put_nowait(None)
        self._marks.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._writer
        with contextlib.suppress(Exception):
            await self._marker
        async with self._marking:  # a mark committed by its caller may be in flight
            pass
