"""Every HTTP listener roomlink runs (API connectors, admin) goes through here.

aiohttp has no header or body read timeout and no connection cap, and it logs each
malformed request (a TLS handshake on a plain port, 500 headers) as an ERROR with a
traceback. :class:`HttpServer` adds what a server facing hostile clients needs:

- ``header_timeout``: a connection must send a complete request head within this many
  seconds of opening (or of its previous request ending); slow or idle ones are closed;
- ``read_timeout``: while a request body is being read, at most this many seconds of
  silence;
- ``max_connections``: connections beyond it are closed at once (counted, logged);
- protocol errors from clients are logged at INFO, one line, at most one per
  ``_LOG_EVERY`` seconds per listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from pydantic import BaseModel, Field

log = logging.getLogger("roomlink.http")

_LOG_EVERY = 10.0  # seconds between two log lines about misbehaving clients
_SWEEP_EVERY = 1.0  # seconds between two looks at every connection's deadlines

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float = 30.0
    read_timeout: float = 60.0
    max_connections: int = 1000


class _RateLimitedLog:
    """One INFO line per ``_LOG_EVERY`` seconds; the lines in between are counted."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last = 0.0
        self._skipped = 0

    def __call__(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < _LOG_EVERY:
            self._skipped += 1
            return
        more = f" (and {self._skipped} more since)" if self._skipped else ""
        self._last, self._skipped = now, 0
        log.info(f"%s: {fmt}%s", self.what, *args, more)


class _QuietClientErrors(logging.Filter):
    """aiohttp's per-connection logger: a client's protocol error is one rate-limited
    INFO line, never an ERROR with a traceback."""

    def __init__(self, say: _RateLimitedLog) -> None:
        super().__init__()
        self.say = say

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        reason = f"{type(exc).__name__}: {str(exc)[:200]}" if exc else record.getMessage()[:200]
        self.say("bad request from a client: %s", reason.replace("\n", " "))
        return False


class _Conn(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection, to know when it last received."""

    def __init__(self, server: HttpServer, inner: Any) -> None:
        self.server = server
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.opened = self.last_rx = self.idle_since = time.monotonic()
        self.request: web.BaseRequest | None = None
        self.upgraded = False
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        conns = self.server.connections
        if len(conns) >= self.server.limits.max_connections:
            self.refused = True
            self.server.say_refused(
                "connection refused: already %d connections (max_connections)", len(conns)
            )
            self.transport.abort()
            return
        conns[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        if self.transport is not None:
            self.server.connections.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def overdue(self, now: float) -> str | None:
        """Why this connection must be closed now, if it must."""
        limits = self.server.limits
        if self.upgraded:
            return None  # a WebSocket: its heartbeat decides
        if self.request is None:
            if now - self.idle_since > limits.header_timeout:
                return f"no complete request within {limits.header_timeout:g}s"
            return None
        if not self.request.content.is_eof() and now - self.last_rx > limits.read_timeout:
            return f"request body stalled for {limits.read_timeout:g}s"
        return None


class _JsonErrors(RequestHandler):
    """aiohttp's handler, answering a request it cannot parse (bad request line, too
    large or too many headers) with the same JSON error body as every other error."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)
        try:
            reason = HTTPStatus(plain.status).phrase.lower()
        except ValueError:
            reason = "error"
        answer = web.json_response({"error": reason}, status=plain.status)
        answer.force_close()
        return answer


class _Site(web.TCPSite):
    """A TCP site whose connections go through :class:`_Conn`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, server: HttpServer) -> None:
        super().__init__(runner, host, port, reuse_address=True, shutdown_timeout=1.0)
        self.guard = server

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        guard = self.guard
        loop = asyncio.get_running_loop()
        kwargs = getattr(server, "_kwargs", {})

        def protocol() -> _Conn:
            return _Conn(guard, _JsonErrors(server, loop=loop, **kwargs))

        self._server = await loop.create_server(
            protocol,
            self._host,
            self._port,
            reuse_address=True,
            backlog=self._backlog,
        )


class HttpServer:
    """One listener: ``app`` served on ``listen`` (host:port) within ``limits``."""

    def __init__(self, app: web.Application, listen: str, limits: HttpLimits, name: str) -> None:
        self.app = app
        self.listen = listen
        self.limits = limits
        self.name = name
        self.connections: dict[asyncio.BaseTransport, _Conn] = {}
        self._say = _RateLimitedLog(f"{name} {listen}")
        self.say_refused = self._say
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        app.middlewares.insert(0, self._track)
        # one logger per listener, so that the filter's rate limit is per listener
        self._aiohttp_log = logging.getLogger(f"roomlink.http.aiohttp.{name}")
        self._quiet = _QuietClientErrors(self._say)
        self._aiohttp_log.addFilter(self._quiet)

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            logger=self._aiohttp_log,
            # aiohttp's own idle timer between requests; ours covers a half-sent head
            keepalive_timeout=self.limits.header_timeout,
        )
        await self._runner.setup()
        host, _, port = self.listen.rpartition(":")
        await _Site(self._runner, host.strip("[]"), int(port), self).start()
        self._sweeper = asyncio.create_task(self._sweep(), name=f"http-sweep {self.listen}")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        self._aiohttp_log.removeFilter(self._quiet)  # a reload makes a new server

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        conn = None if transport is None else self.connections.get(transport)
        if conn is None:
            return await handler(request)
        conn.request = request
        conn.upgraded = request.headers.get("Upgrade", "").lower() == "websocket"
        try:
            return await handler(request)
        finally:
            conn.request, conn.upgraded = None, False
            conn.idle_since = time.monotonic()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            now = time.monotonic()
            for transport, conn in list(self.connections.items()):
                why = conn.overdue(now)
                if why is not None:
                    self._say("closed a connection: %s", why)
                    self.connections.pop(transport, None)
                    if conn.transport is not None:
                        conn.transport.abort()


class HttpLimitOptions(BaseModel):
    """The options of every listener; mixed into the models of those that have one."""

    header_timeout: float = Field(
        default=30.0, gt=0, description="seconds a client has to send a complete request head"
    )
    read_timeout: float = Field(
        default=60.0, gt=0, description="seconds of silence allowed while a body is read"
    )
    max_connections: int = Field(
        default=1000, ge=1, description="open connections (stream clients included) at most"
    )

    def http_limits(self) -> HttpLimits:
        return HttpLimits(self.header_timeout, self.read_timeout, self.max_connections)


# -- answering a file download (the API's /v1/files/..., the admin server's /files/...) ---

# a download is never run as a page: no script, no plugin, no request, its own origin
FILE_CSP = "default-src 'none'; sandbox"
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$&-^_.+")


def file_type(mime: str | None) -> str:
    """``mime`` without parameters when it is a well-formed type, else octet-stream."""
    kind = (mime or "").split(";", 1)[0].strip().lower()
    main, slash, sub = kind.partition("/")
    if slash and main and sub and len(kind) <= 127 and set(main + sub) <= _TYPE_CHARS:
        return kind
    return "application/octet-stream"


def _disposition(name: str) -> str:
    """``attachment`` with the name as RFC 6266 says: an ASCII stand-in, and the UTF-8
    name percent-encoded (so no quote, semicolon or line break reaches the header)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\%' else "_"
                         for c in name) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def serve_file(request: web.Request, name: str, mime: str | None, size: int | None,
                     chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    """Answer a kept file's bytes, streamed a chunk at a time (never whole in memory),
    as a download no browser runs: ``Content-Disposition: attachment``,
    ``X-Content-Type-Options: nosniff`` and a sandboxing ``Content-Security-Policy``.
    A file that turns out not to be kept (``LookupError`` before the first byte) is a
    JSON 404."""
    source = aiter(chunks)
    try:
        first = await anext(source, b"")
    except LookupError:
        return web.json_response({"error": "no such file"}, status=404)
    response = web.StreamResponse(headers={
        "Content-Type": file_type(mime),
        "Content-Disposition": _disposition(name),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_CSP,
        "Cache-Control": "private, max-age=3600",
    })
    if size is not None:
        response.content_length = size
    await response.prepare(request)
    if request.method != "HEAD":
        await response.write(first)
        async for chunk in source:
            await response.write(chunk)
    await response.write_eof()
    return response
