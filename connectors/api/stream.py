"""One WebSocket stream client: its own bounded send buffer and its own writer task.

Delivery only ever queues a frame here (never waits for a client's socket), so a client
that reads slowly or not at all cannot hold up its room or the other clients. When more
than ``limit`` bytes wait for one client whose socket is full, it is disconnected with
close code :data:`TOO_SLOW`; it may reconnect with ``?after=<last id it got>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

from aiohttp import web

log = logging.getLogger("roomlink.connector.api")

TOO_SLOW = 4008  # the client did not read fast enough; reconnect with ?after=ID
GOING_AWAY = 1001  # the daemon is stopping
CLOSE_WAIT = 2.0  # seconds the closing handshake may take
STALL = 15.0  # seconds a frame may wait on every client of a room before they are cut
FLUSH_WAIT = 30.0  # seconds a closed client has to read what was buffered for it
# a frame up to this size may be written by delivery itself when the client's socket is
# empty: it stays under the transport's high-water mark, so the write cannot wait
DIRECT_MAX = 16_384

Frame = tuple[str, str]  # (key: message id and part, JSON text)


class StreamClient:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, limit: int) -> None:
        self.ws = ws
        self.transport = request.transport
        self.peer = request.remote
        self.limit = limit
        self._queue: deque[tuple[str, str, int, asyncio.Future[bool]]] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._skip: set[str] = set()  # keys already sent by the replay
        self.closing = False
        self._idle = False  # the writer task waits for frames: nothing of its is in flight
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def start(self, replay: Iterable[Frame] = ()) -> None:
        """Send ``replay`` first, then what :meth:`offer` queues."""
        self._task = asyncio.create_task(self._write(list(replay)), name=f"stream {self.peer}")

    def offer(self, key: str, data: str, size: int) -> asyncio.Future[bool] | None:
        """Queue one frame: a future that says True once it is written to the socket (False
        if the client went away first); None if this client is closing, or now closes
        for being slow."""
        if self.closing:
            return None
        if self._queued + size > self.limit and self._backed_up():
            log.info("stream client %s disconnected: more than %d bytes waited for it",
                     self.peer, self.limit)
            self.close(TOO_SLOW, f"too slow: more than {self.limit} bytes waited; "
                       "reconnect with ?after=<last id>")
            return None
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((key, data, size, written))
        self._queued += size
        self._wake.set()
        return written

    def can_write_now(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may be written at once, by the caller, without
        waiting: nothing is queued or being written for this client and its socket took
        everything so far. That saves delivery a trip through the writer task."""
        transport = self.transport
        return (self._idle and not self.closing and size <= DIRECT_MAX
                and transport is not None and not transport.is_closing()
                and transport.get_write_buffer_size() == 0)

    def _backed_up(self) -> bool:
        """Whether the client's socket is full. Until it is, a long queue only means that
        the writer has not had its turn on the loop yet (delivery queues in bursts)."""
        transport = self.transport
        return transport is None or transport.is_closing() or (
            transport.get_write_buffer_size() > 0
        )

    async def _write(self, replay: list[Frame]) -> None:
        try:
            for key, data in replay:
                await self.ws.send_str(data)
                self._skip.add(key)
            while True:
                while self._queue:
                    key, data, size, written = self._queue[0]
                    if key not in self._skip:  # else: delivered while the replay was read
                        await self.ws.send_str(data)
                    self._queue.popleft()
                    self._queued -= size
                    if not written.done():
                        written.set_result(True)
                self._skip.clear()
                self._wake.clear()
                self._idle = True
                await self._wake.wait()
                self._idle = False
        except (ConnectionError, RuntimeError):
            self.close(GOING_AWAY, "")

    def close(self, code: int, reason: str) -> None:
        """Stop sending and close (a close frame if the socket takes it, else cut it)."""
        if self.closing:
            return
        self.closing = True
        for *_, written in self._queue:
            if not written.done():
                written.set_result(False)
        self._queue.clear()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._closer = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), CLOSE_WAIT)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass  # aiohttp closed the transport: what is buffered (the close frame last)
            # still goes out if the client reads again; a client that never does is cut
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(FLUSH_WAIT, transport.abort)

    async def closed(self) -> None:
        """Wait until the writer and the closing handshake are over."""
        for task in (self._task, self._closer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
