"""One proven connection of a link: numbered requests and their answers."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

from roomlink.message.model import Message

from .wire import encode_message


class Socket(Protocol):
    """What both aiohttp WebSocket ends offer (server's and client's)."""

    async def send_str(self, data: str, compress: int | None = None) -> None: ...
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class Session:
    def __init__(self, ws: Socket) -> None:
        self.ws = ws
        self._n = 0
        self._replies: dict[int, asyncio.Future[str | None]] = {}

    async def request(self, room: str, message: Message) -> asyncio.Future[str | None]:
        """Send a message; the future is None when the peer recorded it, else the reason
        it refused it; ConnectionError when the connection ended first."""
        self._n += 1
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._replies[self._n] = future
        await self.ws.send_str(encode_message(self._n, room, message))
        return future

    def answered(self, n: int, reason: str | None) -> bool:
        """An ok (reason None) or no; False when nothing waits for ``n``."""
        future = self._replies.pop(n, None)
        if future is None:
            return False
        if not future.done():
            future.set_result(reason)
        return True

    async def answer(self, n: int, reason: str | None) -> None:
        body = {"t": "ok", "n": n} if reason is None else {"t": "no", "n": n,
                                                            "reason": reason[:500]}
        await self.ws.send_str(json.dumps(body))

    def ended(self) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("the link went down"))
                future.exception()  # retrieved: nobody may wait for it any more
        self._replies.clear()
