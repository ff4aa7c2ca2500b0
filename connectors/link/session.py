"""One proven connection of a link: numbered requests and their answers, the messages
received waiting to be recorded, and the file transfers of both directions (files.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Protocol

from roomlink.message.model import Attachment, Message

from .wire import MessageFrame, encode_message


class Socket(Protocol):
    """What both aiohttp WebSocket ends offer (server's and client's)."""

    async def send_str(self, data: str, compress: int | None = None) -> None: ...
    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


END = object()  # a pull's last item: the sender sent every byte


class Pull:
    """The bytes of one file this side asked the peer for (``want``), as they arrive:
    the reading loop puts them, the recording loop takes them. At most a few chunks wait
    here: the reading loop waits for room (TCP then slows the peer down)."""

    DEPTH = 4

    def __init__(self, f: int) -> None:
        self.f = f
        self._items: deque[object] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False

    async def put(self, item: object) -> None:
        if self.closed:
            return
        self._items.append(item)
        self._ready.set()
        if len(self._items) >= self.DEPTH:
            self._room.clear()
            await self._room.wait()

    async def get(self) -> object:
        while not self._items:
            if self.closed:
                raise ConnectionError("the transfer ended with the link")
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if len(self._items) < self.DEPTH:
            self._room.set()
        return item

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._room.set()
        self._ready.set()


class Session:
    def __init__(self, ws: Socket) -> None:
        self.ws = ws
        self._n = 0
        self._replies: dict[int, asyncio.Future[str | None]] = {}
        self._sent: dict[int, Message] = {}  # what is in flight: its files may be asked for
        self._touched: dict[int, float] = {}  # n -> when the peer last fetched its files
        self.incoming: asyncio.Queue[MessageFrame | None] = asyncio.Queue()
        self._f = 0
        self.pull: Pull | None = None  # the file this side is receiving now
        self.serving: dict[int, asyncio.Task[None]] = {}  # f -> a file being sent
        self.up = True

    async def request(self, room: str, message: Message
                      ) -> tuple[int, asyncio.Future[str | None]]:
        """Send a message: its number, and a future that is None when the peer recorded
        it, else the reason it refused it; ConnectionError when the connection ended first."""
        self._n += 1
        n = self._n
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._replies[n] = future
        self._sent[n] = message
        await self.ws.send_str(encode_message(n, room, message))
        return n, future

    def answered(self, n: int, reason: str | None) -> bool:
        """An ok (reason None) or no; False when nothing waits for ``n``."""
        future = self._replies.pop(n, None)
        self._sent.pop(n, None)
        self._touched.pop(n, None)
        if future is None:
            return False
        if not future.done():
            future.set_result(reason)
        return True

    def wanted(self, n: int, sha256: str) -> Attachment | None:
        """The file ``sha256`` of message ``n`` while ``n`` waits for its answer (the only
        files a peer may ask for), or None."""
        message = self._sent.get(n)
        if message is None:
            return None
        self.touch(n)
        return next((a for a in message.attachments if a.sha256 == sha256), None)

    def touch(self, n: int) -> None:
        if n in self._sent:
            self._touched[n] = time.monotonic()

    def busy(self, n: int, within: float) -> bool:
        """Whether the peer fetched a file of ``n`` within the last ``within`` seconds: it
        is still working on the message, its answer is not overdue."""
        return time.monotonic() - self._touched.get(n, -1e18) < within

    async def answer(self, n: int, reason: str | None) -> None:
        body = {"t": "ok", "n": n} if reason is None else {"t": "no", "n": n,
                                                            "reason": reason[:500]}
        await self.ws.send_str(json.dumps(body))

    def open_pull(self) -> Pull:
        if self.pull is not None:
            self.pull.close()
        self._f += 1
        self.pull = Pull(self._f)
        return self.pull

    def close_pull(self, pull: Pull) -> None:
        pull.close()
        if self.pull is pull:
            self.pull = None

    def pull_for(self, f: int) -> Pull | None:
        """The pull ``f`` is for; None for one this side gave up (its last frames may
        still come); ValueError for a transfer this side never asked for."""
        if f > self._f or f < 1:
            raise ValueError(f"bytes of a file this side did not ask for ({f})")
        return self.pull if self.pull is not None and self.pull.f == f else None

    def ended(self) -> None:
        self.up = False
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("the link went down"))
                future.exception()  # retrieved: nobody may wait for it any more
        self._replies.clear()
        self._sent.clear()
        if self.pull is not None:
            self.pull.close()
        for task in self.serving.values():
            task.cancel()
        self.incoming.put_nowait(None)
