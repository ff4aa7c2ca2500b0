"""Delivery: one worker per destination room, in order, paced, retried, never doubled.

A worker sends the head of its room's queue, waits for the store to commit that it was
delivered, and only then sends the next one: a crash can leave at most the one message
that was in flight to be sent again (and then with the same id and delivery key).
The queue lives in the store; memory holds at most ``MEMORY_CAP`` rows of it, and a
worker that fell behind pages the rest from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from roomlink.connector.base import Connector
from roomlink.connector.files import FileRefused
from roomlink.connector.pacing import TokenBucket, backoff
from roomlink.errors import ConnectorError, NotSupported, PermanentError, RateLimited, RoomDown
from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Kind, Message, Outbound, RoomRef, utcnow
from roomlink.message.textsplit import split_text
from roomlink.relay import metrics
from roomlink.relay.files import file_line, file_link
from roomlink.relay.replay import display_name
from roomlink.relay.router import Router
from roomlink.relay.topology import Pipe
from roomlink.store import OutboxRow, Store
from roomlink.store.errors import LeaseLost

log = logging.getLogger("roomlink.delivery")

MEMORY_CAP = 10_000
PAGE = 256
YIELD_EVERY = 32  # a send and its commit may not suspend: let other tasks run now and then


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_initial: float = 1.0
    backoff_max: float = 300.0

    def delay(self, attempt: int) -> float:
        return backoff(attempt, self.backoff_initial, self.backoff_max)


class RoomWorker:
    def __init__(
        self,
        ref: RoomRef,
        connector: Connector,
        store: Store,
        router: Router,
        pipes: dict[str, Pipe],
        pacer: TokenBucket,
        policy: RetryPolicy,
    ) -> None:
        self.ref = ref
        self.connector = connector
        self.store = store
        self.router = router
        self.pipes = pipes
        self.pacer = pacer
        # the platform's per-room limits, on top of the connector-wide pacer
        self.room_pacers = [TokenBucket(rate, burst)
                            for rate, burst in connector.limits.room_rates]
        self.policy = policy
        self._queue: deque[OutboxRow] = deque()
        self._in_store_only = True  # start by paging what a previous run left pending
        self._last_id = 0
        self._wake = asyncio.Event()
        self._rescan = False
        self._stopping = False
        # a part of the current row was handed to the platform: stopping now may double it
        self.sending = False
        self.last_delivery: datetime | None = None  # for the status page
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._delivered = metrics.DELIVERED.labels(ref.connector)
        # the destination party's files_url (read at each use: a reload may change it)
        self.files_url: Callable[[], str | None] = lambda: None
        # replicas: whether this replica still holds the connector's lease (checked before
        # each copy is handed to the platform; a worker that may not send stops)
        self.may_send: Callable[[], bool] = lambda: True

    def push(self, row: OutboxRow) -> None:
        """A new row was committed for this room."""
        if not self._in_store_only:
            if len(self._queue) < MEMORY_CAP:
                self._queue.append(row)
            else:
                self._in_store_only = True
        self._wake.set()

    @property
    def last_id(self) -> int:
        """Every row up to this id has been handled (delivered or failed)."""
        return self._last_id

    def poke(self) -> None:
        """Rows may have been committed by another process (a replica): look in the
        store for rows after the last one handled."""
        self._in_store_only = True
        self._wake.set()

    def rescan(self) -> None:
        """Older rows became pending again (``outbox retry``): after the message in flight,
        read the queue from the store again, from the start, in id order."""
        self._rescan = True
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"deliver {self.ref}")

    async def stop(self, grace: float) -> None:
        """Finish the message in flight (for up to ``grace`` seconds), then stop.

        Only a copy being handed to the platform is in flight: a worker waiting for its
        room (an API room nobody watches, a channel not joined yet), for its pacer or for
        a retry stops at once, and its queue stays in the store for the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace if self.sending else 0)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        except Exception as exc:  # what stopped it is logged; the room stops all the same
            log.warning("%s: stopped after %s", self.ref, exc)

    async def _next(self) -> OutboxRow | None:
        while not self._stopping:
            if self._rescan:
                # rows below _last_id are pending again; the one in flight has been marked
                # already, so paging from the start cannot send it twice
                self._rescan = False
                self._queue.clear()
                self._in_store_only = True
                self._last_id = 0
            while self._queue:
                row = self._queue.popleft()
                if row.id > self._last_id:
                    return row
            if self._in_store_only:
                page = await self.store.pending(
                    self.ref.connector, self.ref.room, self._last_id, PAGE
                )
                if page:
                    self._queue.extend(page)
                    continue
                # caught up: from now on rows come through push(); one more look catches
                # rows committed between the page query and this switch
                self._in_store_only = False
                fetched = await self.store.pending(self.ref.connector, self.ref.room, self._last_id)
                merged = {r.id: r for r in (*self._queue, *fetched)}
                self._queue = deque(sorted(merged.values(), key=lambda r: r.id))
                continue
            self._wake.clear()
            await self._wake.wait()
        return None

    async def _run(self) -> None:
        done = 0
        while True:
            try:
                row = await self._next()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store away (a lost connection): look again soon
                log.warning("%s: cannot read the pending copies: %s", self.ref, exc)
                await asyncio.sleep(1)
                self._queue.clear()
                self._in_store_only = True
                continue
            if row is None:
                return
            done += 1
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if not self.may_send():
                log.warning("%s: this replica no longer holds the connector; stopped", self.ref)
                return
            try:
                await self._deliver(row)
            except asyncio.CancelledError:
                raise
            except LeaseLost as exc:  # another replica may deliver this room now
                log.warning("%s: %s; stopped", self.ref, exc)
                self.sending = False
                return
            except Exception:  # a bug must not stop the room: log, keep the row pending
                self.sending = False
                log.exception("%s: delivering %s failed unexpectedly", self.ref, row.message.id)
                await asyncio.sleep(1)
                self._queue.clear()  # the row is still pending: page again from the store
                self._in_store_only = True
                continue
            self.sending = False
            self._last_id = row.id

    async def _deliver(self, row: OutboxRow) -> None:
        message = row.message
        pipe = self.pipes.get(message.pipe)
        limits = self.connector.limits
        display = display_name(message, pipe, limits)
        reply_native = await self._native(message.reply_to)
        target_native = await self._native(message.target)
        kind = message.kind
        text = message.text
        if kind in (Kind.EDIT, Kind.DELETE) and target_native is None:
            await self._finish(row, [], None)  # the original never reached this room
            return
        if kind is Kind.EDIT and not limits.edits:
            kind, text = Kind.MESSAGE, text + escape(" (edited)")
        if kind is Kind.DELETE and not limits.deletes:
            await self._finish(row, [], None)
            return
        native_files: tuple[Attachment, ...] = ()
        file_lines: list[str] = []
        if kind is not Kind.DELETE and kind is not Kind.EDIT and message.attachments:
            native_files, file_lines = await self._plan_files(message)
            text = "\n".join([text, *file_lines] if text else file_lines)
        parts = split_text(text, limits.max_text_length) if kind is not Kind.DELETE else [""]
        native_ids: list[str] = []
        attempts = row.attempts
        for index, part in enumerate(parts):
            out = Outbound(
                room=self.ref.room,
                message=message,
                text=part,
                display_name=display,
                delivery_key=f"{message.id}:{self.ref.connector}:{self.ref.room}:{index}",
                reply_to_native=reply_native,
                target_native=target_native,
                part=index,
                parts=len(parts),
                files=native_files if index == len(parts) - 1 else (),
            )
            while True:
                await self.connector.wait_ready(self.ref.room)
                await self.pacer.take()
                for room_pacer in self.room_pacers:
                    await room_pacer.take()
                if not self.may_send():
                    raise LeaseLost("this replica no longer holds the connector")
                self.sending = True
                try:
                    native: str | None = None
                    if kind is Kind.EDIT:
                        await self.connector.edit(out)
                    elif kind is Kind.DELETE:
                        await self.connector.delete(out)
                    else:
                        native = await self.connector.send(out)
                    break
                except RoomDown:
                    self.sending = index > 0  # only earlier parts reached the platform
                    await asyncio.sleep(0.05)  # wait_ready decides when to go again
                except RateLimited as exc:
                    self.sending = index > 0
                    log.warning("%s: rate limited (%s); sending again in %.1fs",
                                self.ref, exc, exc.retry_after)
                    metrics.RETRIES.labels(self.ref.connector).inc()
                    await asyncio.sleep(exc.retry_after)
                except FileRefused as exc:
                    self.sending = index > 0
                    if not out.files:  # a refusal of the text itself: nothing to fall back to
                        await self._finish(row, [], f"refused: {exc}", attempts + 1)
                        return
                    # the platform refused a file: the same part again, the files as lines
                    log.warning("%s: files refused (%s); sending them as links",
                                self.ref, exc, extra=self._fields(row))
                    lines = [await self._file_line(a) for a in out.files]
                    out = replace(out, text="\n".join([out.text, *lines] if out.text else lines),
                                  files=())
                except (PermanentError, NotSupported) as exc:
                    await self._finish(row, [], f"refused: {exc}", attempts + 1)
                    return
                except (ConnectorError, OSError, TimeoutError) as exc:
                    attempts += 1
                    if attempts >= self.policy.max_attempts:
                        await self._finish(row, [], f"gave up after {attempts} attempts: {exc}",
                                           attempts)
                        return
                    metrics.RETRIES.labels(self.ref.connector).inc()
                    delay = self.policy.delay(attempts)
                    self.last_error = str(exc)[:500]
                    log.warning("%s: send failed (%s); retry %d in %.1fs",
                                self.ref, exc, attempts, delay, extra=self._fields(row))
                    await self.store.note_attempt(row.id, str(exc)[:500], attempts)
                    self.sending = index > 0  # the wait for the retry is not in flight
                    await asyncio.sleep(delay)
            if native is not None:  # an edit or delete keeps the original's native id
                native_ids.append(native)
                self.router.note_posted(self.ref, native)
        await self._finish(row, native_ids, None)

    async def _plan_files(self, message: Message
                          ) -> tuple[tuple[Attachment, ...], list[str]]:
        """Which kept files this room's connector posts itself (``Limits.files``, within
        ``max_file_bytes`` each and ``max_total_file_bytes`` together, in order), and a
        line of text for every other file: nothing is dropped.
        A file known only by the platform's URL (no bytes kept, no note) stays the
        connector's to show, as before files were kept."""
        limits = self.connector.limits
        native: list[Attachment] = []
        lines: list[str] = []
        budget = limits.max_total_file_bytes  # what the message may still carry natively
        for a in message.attachments:
            fits = limits.max_file_bytes is None or (a.size or 0) <= limits.max_file_bytes
            fits = fits and (budget is None or (a.size or 0) <= budget)
            # a file missing from the store (removed behind roomlink's back) goes as a line:
            # a connector that cannot read it must not hold the room up
            if a.sha256 and limits.files and fits and await self.store.files.has(a.sha256):
                native.append(a)
                budget = None if budget is None else budget - (a.size or 0)
            elif a.sha256 or a.note or not a.url:
                lines.append(await self._file_line(a))
        return tuple(native), lines

    async def _file_line(self, a: Attachment) -> str:
        """``[file: NAME (TYPE, SIZE)]``, with the link where this room's party sets
        ``files_url`` (its own file id: ids are per party) and keeps the file; else its
        note (a file whose bytes did not cross a federation link)."""
        files_url = self.files_url()
        link = None
        if a.sha256 and files_url and await self.store.files.has(a.sha256):
            link = file_link(files_url, await self.store.file_id(a.sha256), a.name)
        return file_line(a, link)

    def _fields(self, row: OutboxRow) -> dict[str, str]:
        """What a JSON log line carries besides its message."""
        return {"connector": self.ref.connector, "room": self.ref.room,
                "message_id": row.message.id, "party": self.store.party,
                "pipe": row.message.pipe}

    async def _native(self, message_id: str | None) -> str | None:
        if message_id is None:
            return None
        return await self.store.native_id(message_id, self.ref.connector, self.ref.room)

    async def _finish(
        self, row: OutboxRow, native_ids: list[str], error: str | None, attempts: int = 0
    ) -> None:
        self.sending = True  # committing the outcome is in flight too: a stop lets it finish
        if error is None:
            await self.store.mark_delivered(row.id, native_ids)
            self._delivered.inc()
            self.last_delivery = utcnow()
        else:
            self.last_error = error[:500]
            log.error("%s: message %s from %s marked failed: %s", self.ref, row.message.id,
                      row.message.origin, error, extra=self._fields(row))
            await self.store.mark_failed(row.id, error[:500], attempts)
            metrics.FAILED.labels(self.ref.connector).inc()
