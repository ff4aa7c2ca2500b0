"""Writing one batch of accepted messages into every party's store, so that the stores
never disagree and one message a store refuses never fails the others.

The fast path is one transaction per store for the whole batch. When a store refuses
the batch, the stores that committed it take it back (it is their newest part, so their
order and hash chains stay intact) and the batch is written again one request at a
time, in order. A request a store still refuses after a few tries is taken back from
the stores that took it, and only its caller gets the error: after any answer, every
party's store holds the message or none does, and all hold the same messages in the
same order. If taking back fails too, no new batch is written until it succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from roomlink.message.model import Message, utcnow
from roomlink.relay import conditional, metrics
from roomlink.relay.align import Expect, align
from roomlink.relay.topology import Topology
from roomlink.store import NewMessage, OutboxRow, Store, StoreError
from roomlink.store.chain import canonical
from roomlink.store.errors import HeadMoved, describe

log = logging.getLogger("roomlink.router")

Item = tuple[list[Message], "asyncio.Future[list[str]]"]
OnRecorded = Callable[[Store, Sequence[OutboxRow]], None]

RETRY_DELAYS = (0.1, 0.5)  # a request a store refused is tried again after these


class PipeLock(Protocol):
    """Keeps the appends of a pipe by other processes out while one batch of it is
    written into every party's store (replicas: ``cluster.enabled``), so that every store
    records the pipe's messages in the same order and its chain stays one line."""

    def hold(self, pipes: Sequence[str]) -> AbstractAsyncContextManager[None]: ...


class Owner(Protocol):
    """The router: its topology and stores may be replaced by a reload at any time."""

    @property
    def pipe_lock(self) -> PipeLock | None: ...
    @property
    def topology(self) -> Topology: ...
    @property
    def stores(self) -> Mapping[str, Store]: ...
    @property
    def on_recorded(self) -> OnRecorded: ...
    @property
    def upstream(self) -> AbstractSet[str]: ...  # links to the host of their pipes


class BatchWriter:
    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self._undo: list[tuple[str, list[str], datetime]] = []  # take-backs that failed

    def _entries(self, messages: Sequence[Message]) -> dict[str, list[NewMessage]]:
        per_store: dict[str, list[NewMessage]] = {}
        topology = self.owner.topology
        upstream = self.owner.upstream
        for message in messages:
            pipe = topology.pipe(message.pipe)
            data = canonical(message)  # the same bytes chain on in every party's store
            for party, outbox in topology.routes(pipe, message.origin):
                if upstream and any(ref.connector in upstream for ref in outbox):
                    # what the host placed never goes back up to it (federation)
                    outbox = tuple(r for r in outbox if r.connector not in upstream)
                per_store.setdefault(party, []).append(NewMessage(message, outbox, data))
        return per_store

    async def write(self, batch: Sequence[Item]) -> None:
        lock = self.owner.pipe_lock
        if lock is None:
            await self._write(batch)
            return
        pipes = sorted({m.pipe for messages, _ in batch for m in messages})
        async with lock.hold(pipes):
            copies: list[tuple[str, list[OutboxRow]]] = []
            try:
                expect = await align(self.owner.topology, self.owner.stores, pipes, copies)
            except Exception as exc:
                log.error("pipe %s: the parties' stores could not be read or brought to the "
                          "same message (%s); batch refused", ", ".join(pipes), describe(exc))
                for _, future in batch:
                    _fail(future, StoreError(f"stores not aligned: {describe(exc)}; retry"))
                return
            finally:
                for party, rows in copies:  # what another replica's lost batch left out
                    self._push(party, rows)
            await self._write(batch, expect)

    async def _write(self, batch: Sequence[Item], expect: Expect | None = None) -> None:
        await self._retry_undo()
        per_store: dict[str, list[NewMessage]] = {}
        for messages, _ in batch:
            for party, entries in self._entries(messages).items():
                per_store.setdefault(party, []).extend(entries)
        since = utcnow()
        parties = list(per_store)
        if expect is None:
            results = await self._record(per_store)
        else:
            results = await conditional.record(self.owner.stores, per_store, expect)
        failed = [(p, r) for p, r in zip(parties, results, strict=True)
                  if isinstance(r, BaseException)]  # fmt: skip
        if any(isinstance(r, HeadMoved) for _, r in failed):
            self._lost(batch, parties, results)
            return
        if not failed:
            for party, result in zip(parties, results, strict=True):
                assert not isinstance(result, BaseException)
                self._push(party, [row for rows in result for row in rows])
            for messages, future in batch:
                _resolve(future, [m.id for m in messages])
            metrics.INGESTED.inc(sum(len(m) for m, _ in batch))
            return
        for party, error in failed:
            log.warning("store of party %s refused a batch of %d requests (%s); recording "
                        "them one by one", party, len(batch), describe(error),
                        extra={"party": party})
        ids = [m.id for messages, _ in batch for m in messages]
        for party, result in zip(parties, results, strict=True):
            if not isinstance(result, BaseException):
                await self._forget(party, ids, since)
        if self._undo:  # a store holds the batch and cannot let go: refuse it all
            error = StoreError("a store could not take back a refused batch; retry")
            for _, future in batch:
                _fail(future, error)
            return
        struggling: set[str] = set()
        for item in batch:
            await self._write_one(item, struggling)

    async def _write_one(self, item: Item, struggling: set[str]) -> None:
        messages, future = item
        todo = self._entries(messages)
        since = utcnow()
        done: dict[str, list[list[OutboxRow]]] = {}
        error: BaseException | None = None
        for attempt in range(len(RETRY_DELAYS) + 1):
            parties = list(todo)
            results = await self._record(todo)
            for party, result in zip(parties, results, strict=True):
                if isinstance(result, BaseException):
                    error = result
                else:
                    done[party] = result
                    del todo[party]
            # a store that already refused one request of this batch gets one try each
            if not todo or attempt == len(RETRY_DELAYS) or set(todo) <= struggling:
                break
            await asyncio.sleep(RETRY_DELAYS[attempt])
        ids = [m.id for m in messages]
        if todo:
            assert error is not None
            struggling.update(todo)
            first = messages[0]
            log.error("message %s refused by the store of %s (%s); taken back from the "
                      "others", ", ".join(ids), ", ".join(sorted(todo)), describe(error),
                      extra={"message_id": ", ".join(ids), "party": ", ".join(sorted(todo)),
                             "pipe": first.pipe, "connector": first.origin_connector,
                             "room": first.origin_room})
            for party in done:
                await self._forget(party, ids, since)
            _fail(future, error)
            return
        for party, result in done.items():
            self._push(party, [row for rows in result for row in rows])
        _resolve(future, ids)
        metrics.INGESTED.inc(len(messages))

    async def _record(
        self, per_store: Mapping[str, Sequence[NewMessage]]
    ) -> list[list[list[OutboxRow]] | BaseException]:
        """Record into every store at once (each its own transaction); the result or the
        error of each, in the order of ``per_store``. No task per store: SQLite commits
        inline, PostgreSQL in its store's writer task."""
        started: list[asyncio.Future[list[list[OutboxRow]]] | BaseException] = []
        for party, entries in per_store.items():
            try:
                started.append(self.owner.stores[party].start_append(entries))
            except Exception as exc:  # a closed store
                started.append(exc)
        results: list[list[list[OutboxRow]] | BaseException] = []
        for item in started:
            if isinstance(item, BaseException):
                results.append(item)
                continue
            try:
                results.append(await item)
            except Exception as exc:
                results.append(exc)
        return results

    def _lost(self, batch: Sequence[Item], parties: Sequence[str],
              results: Sequence[list[list[OutboxRow]] | BaseException]) -> None:
        """Replicas: a store's pipe moved under this batch, so this replica lost the
        pipe's lock during it and another wrote first. What stores took stays (the next
        holder gives it to the others, ``relay.align``); the requests are refused, for
        the platform or client to give again (an id recorded meanwhile is kept once)."""
        for party, result in zip(parties, results, strict=True):
            if not isinstance(result, BaseException):
                self._push(party, [row for rows in result for row in rows])
        pipes = sorted({m.pipe for messages, _ in batch for m in messages})
        log.warning("pipe %s moved during a batch of %d requests (this replica lost the "
                    "pipe's lock meanwhile); refused, for a retry", ", ".join(pipes),
                    len(batch), extra={"pipe": ", ".join(pipes)})
        error = StoreError("another replica wrote the pipe meanwhile; retry")
        for _, future in batch:
            _fail(future, error)

    def _push(self, party: str, rows: list[OutboxRow]) -> None:
        if rows:
            self.owner.on_recorded(self.owner.stores[party], rows)

    async def _forget(self, party: str, ids: list[str], since: datetime) -> None:
        try:
            await self.owner.stores[party].forget(ids, since)
        except Exception as exc:
            log.error("store of party %s could not take back %d refused messages (%s); "
                      "no new input until it can", party, len(ids), describe(exc),
                      extra={"party": party})
            self._undo.append((party, ids, since))

    async def _retry_undo(self) -> None:
        pending, self._undo = self._undo, []
        for party, ids, since in pending:
            await self._forget(party, ids, since)
        if self._undo:
            raise StoreError("a store could not take back messages the others refused; retry")


def _resolve(future: asyncio.Future[list[str]], ids: list[str]) -> None:
    if not future.done():
        future.set_result(ids)


def _fail(future: asyncio.Future[list[str]], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
