"""``type: link``: a conversation shared with another roomlink instance.

The listening side hosts the link's conversations: what the peer sends is recorded here
in the order it arrives (``ctx.place``) and every message of the conversation goes back
to the peer through this connector's room, like to any other room, in this side's order.
The connecting side (``Limits.upstream``) sends what its own rooms said, held durably by
the core until then (``ctx.held_after``), and records what the host sends back, placed,
in that order: the same ids, order and authors on both sides. A message the peer may
not send (a party or room of this instance, a conversation not shared) is refused with
a reason, logged and counted, and the link stays up; a frame that breaks the protocol
closes the link with its reason (wire.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from roomlink.connector import (
    BadInput,
    Connector,
    ConnectorOptions,
    Limits,
    PermanentError,
    RoomDown,
    ShuttingDown,
    TokenBucket,
    backoff,
)
from roomlink.message.model import Message, Outbound, utcnow

from .files import FileExchange, parse_chunk
from .options import LinkOptions
from .session import END, Session, Socket
from .wire import (
    MALFORMED,
    REFUSED,
    Malformed,
    PeerRefused,
    field,
    frame,
    message_frame,
    nonce,
    parse_public,
    private_key,
    prove,
    public_line,
    verify,
)

log = logging.getLogger("roomlink.connector.link")

HANDSHAKE_TIMEOUT = 15.0
REPLY_TIMEOUT = 60.0
HELD_WINDOW = 64  # held messages sent before their answers are awaited
STORE_RETRY_MAX = 30.0


class LinkConnector(Connector):
    platform = "link"
    Options = LinkOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, LinkOptions)
        self.opts = options
        if ctx.instance_key is None:
            raise ValueError("a link needs this instance's key (instance: {key: ...})")
        self._key = private_key(ctx.instance_key)
        self._me = public_line(self._key)
        self._peer = parse_public(options.peer_key)
        self._session: Session | None = None
        self._up = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._stopping = False
        self._bucket = TokenBucket(options.max_rate, options.burst)
        self._files = FileExchange(ctx.name, ctx.files, options.max_file_bytes,
                                   options.max_frame_bytes, ctx.log)
        self.last_message: datetime | None = None  # for the status page
        self.peer_fingerprint = hashlib.sha256(options.peer_key.encode()).hexdigest()[:16]

    @property
    def limits(self) -> Limits:
        return Limits(can_impersonate=True, edits=True, deletes=True,
                      upstream=self.opts.url is not None)

    # -- life ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.opts.listen is not None:
            app = web.Application()
            app.router.add_get("/", self._accept)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
            host, _, port = self.opts.listen.rpartition(":")
            site = web.TCPSite(self._runner, host.strip("[]"), int(port),
                               ssl_context=self._server_tls())
            await site.start()
        else:
            self._client = aiohttp.ClientSession()
            self._spawn(self._dial_loop())

    async def stop(self) -> None:
        self._stopping = True
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.ws.close(code=1001, message=b"roomlink is stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def is_connected(self) -> bool:
        return self._up.is_set()

    def details(self) -> dict[str, str]:
        last = self.last_message
        return {"role": "host" if self.opts.listen is not None else "guest",
                "peer key": self.opts.peer_key,
                "last message": "never" if last is None else last.isoformat(timespec="seconds")}

    def is_ready(self, room: str) -> bool:
        return self._up.is_set() and room in self.ctx.rooms

    async def wait_ready(self, room: str) -> None:
        await self._up.wait()

    # -- the listening side ----------------------------------------------------------------
    def _server_tls(self) -> ssl.SSLContext | None:
        if self.opts.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.opts.tls["cert"], self.opts.tls["key"])
        return context

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.opts.max_frame_bytes, heartbeat=30)
        await ws.prepare(request)
        try:
            hello = await self._receive(ws, "hello")
            theirs = field(hello, "nonce", str)
            if field(hello, "key", str).strip() != self.opts.peer_key:
                await self._refuse(ws, "a peer whose key is not this link's peer_key",
                                   "this instance does not know your key")
                return ws
            mine = nonce()
            await ws.send_str(json.dumps({"t": "hello", "v": 1, "key": self._me,
                                          "nonce": mine,
                                          "sig": prove(self._key, "host", theirs, mine)}))
            proof = await self._receive(ws, "proof")
            if not verify(self._peer, "guest", mine, theirs, proof.get("sig")):
                await self._refuse(ws, "a peer that could not prove it holds peer_key's "
                                   "private key", "no proof of your key")
                return ws
            await ws.send_str(json.dumps({"t": "ready"}))
        except PeerRefused as exc:
            self.ctx.log.error("%s: the peer refused this instance: %s", self.ctx.name, exc)
            return ws
        except (Malformed, TimeoutError, ConnectionError) as exc:
            self.ctx.log.warning("%s: a connection failed its handshake: %s", self.ctx.name,
                                 exc or "no answer in time")
            await ws.close(code=MALFORMED, message=str(exc)[:120].encode())
            return ws
        await self._serve(ws, request.remote or "?")
        return ws

    async def _refuse(self, ws: Socket, what: str, reason: str) -> None:
        self.ctx.log.warning("%s: refused %s", self.ctx.name, what)
        with contextlib.suppress(Exception):
            await ws.send_str(json.dumps({"t": "refused", "reason": reason}))
        await ws.close(code=REFUSED, message=reason.encode())

    async def _receive(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                       expected: str) -> dict[str, Any]:
        msg = await ws.receive(timeout=HANDSHAKE_TIMEOUT)
        if msg.type is not WSMsgType.TEXT:
            raise ConnectionError(f"the connection ended before {expected}")
        value = frame(msg.data)
        if value["t"] == "refused":
            raise PeerRefused(str(value.get("reason", "no reason given"))[:200])
        if value["t"] != expected:
            raise Malformed(f"a {value['t']} frame where {expected} was due")
        return value

    # -- the connecting side ---------------------------------------------------------------
    def _client_tls(self) -> ssl.SSLContext | bool:
        assert self.opts.url is not None
        if not self.opts.url.startswith("wss://"):
            return False
        context = ssl.create_default_context(cafile=self.opts.ca)
        if not self.opts.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _dial_loop(self) -> None:
        assert self._client is not None and self.opts.url is not None
        attempt = 0
        while not self._stopping:
            try:
                async with self._client.ws_connect(
                    self.opts.url, ssl=self._client_tls(), heartbeat=30,
                    max_msg_size=self.opts.max_frame_bytes, timeout=aiohttp.ClientWSTimeout(
                        ws_close=5.0),
                ) as ws:
                    mine = nonce()
                    await ws.send_str(json.dumps({"t": "hello", "v": 1, "key": self._me,
                                                  "nonce": mine}))
                    hello = await self._receive(ws, "hello")
                    theirs = field(hello, "nonce", str)
                    if field(hello, "key", str).strip() != self.opts.peer_key:
                        await self._refuse(ws, "a host whose key is not this link's peer_key",
                                           "this instance does not know your key")
                    elif not verify(self._peer, "host", mine, theirs, hello.get("sig")):
                        await self._refuse(ws, "a host that could not prove it holds "
                                           "peer_key's private key", "no proof of your key")
                    else:
                        await ws.send_str(json.dumps({
                            "t": "proof", "sig": prove(self._key, "guest", theirs, mine)}))
                        await self._receive(ws, "ready")
                        attempt = 0
                        await self._serve(ws, self.opts.url)
            except PeerRefused as exc:
                self.ctx.log.error("%s: the host refused this instance: %s", self.ctx.name, exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError,
                    Malformed) as exc:
                self.ctx.log.warning("%s: cannot reach %s: %s", self.ctx.name, self.opts.url,
                                     exc or type(exc).__name__)
            if self._stopping:
                return
            attempt += 1
            await asyncio.sleep(backoff(attempt, self.opts.reconnect_initial,
                                        self.opts.reconnect_max))

    # -- a proven connection, either side ----------------------------------------------------
    async def _serve(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                     where: str) -> None:
        old = self._session
        if old is not None:  # the peer proved its key again: the newer connection wins
            with contextlib.suppress(Exception):
                await old.ws.close(code=1000, message=b"replaced by a newer connection")
        session = Session(ws)
        self._session = session
        self._up.set()
        self.ctx.log.info("%s: linked with %s (key %s)", self.ctx.name, where,
                          self.peer_fingerprint)
        recorder = asyncio.ensure_future(self._record_loop(session))
        sender = None
        if self.limits.upstream:
            sender = asyncio.ensure_future(self._send_held(session))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:  # a chunk of a file this side asked for
                    await self._files.received(session, *parse_chunk(msg.data))
                    continue
                if msg.type is WSMsgType.ERROR:  # too large, or not WebSocket at all
                    raise Malformed(f"a frame the link cannot read ({ws.exception()})")
                if msg.type is not WSMsgType.TEXT:
                    raise Malformed("a frame that is neither text nor a file's chunk")
                await self._frame(session, frame(msg.data))
        except Malformed as exc:
            self.ctx.log.error("%s: closing the link: the peer sent %s", self.ctx.name, exc)
            with contextlib.suppress(Exception):
                await ws.close(code=MALFORMED, message=str(exc)[:120].encode())
        except (ConnectionError, aiohttp.ClientError):
            pass  # it went away while we answered: told below, like any other end
        finally:
            session.ended()
            if sender is not None:
                sender.cancel()
            await asyncio.gather(*(t for t in (sender, recorder) if t is not None),
                                 return_exceptions=True)
            if self._session is session:
                self._session = None
                self._up.clear()
                if not self._stopping:
                    self.ctx.log.warning("%s: link with %s down", self.ctx.name, where)

    async def _frame(self, session: Session, value: dict[str, Any]) -> None:
        kind = value["t"]
        if kind == "msg":
            await self._bucket.take()
            if session.incoming.qsize() >= HELD_WINDOW + len(self.ctx.rooms) + 256:
                raise Malformed("more messages than it may send before their answers")
            session.incoming.put_nowait(message_frame(value))
        elif kind in ("ok", "no"):
            reason = None if kind == "ok" else str(value.get("reason", ""))[:500]
            if not session.answered(field(value, "n", int), reason):
                raise Malformed(f"an answer to no message ({value.get('n')})")
        elif kind == "want":
            self._files.want(session, value)
        elif kind == "stop":
            self._files.stop(session, value)
        elif kind in ("end", "lack"):
            item = END if kind == "end" else str(value.get("reason", "no reason"))[:300]
            await self._files.received(session, field(value, "f", int), item)
        else:
            raise Malformed(f"an unknown frame type {kind[:40]!r}")

    async def _record_loop(self, session: Session) -> None:
        """Record what the peer sent, in the order it came, each once the bytes of its
        files are kept here; then answer it. Ends with the session or the daemon."""
        while True:
            mf = await session.incoming.get()
            if mf is None:
                return
            attempt = 0
            while True:
                try:
                    message = await self._files.fetch_all(session, mf)
                    if not await self._received(session, mf.n, mf.room, message):
                        return
                    break
                except (ConnectionError, aiohttp.ClientError):
                    return  # unanswered: the peer sends it again on the next connection
                except Exception as exc:  # a store failure while keeping a file
                    attempt += 1
                    delay = backoff(attempt, 0.5, STORE_RETRY_MAX)
                    self.ctx.log.error("%s: could not keep a file from the peer (%s); "
                                       "retrying in %.1fs", self.ctx.name, exc, delay)
                    await asyncio.sleep(delay)
                if not session.up:
                    return

    async def _received(self, session: Session, n: int, room: str, message: Message) -> bool:
        """Record one message from the peer and answer it; False when shutting down."""
        assert self.ctx.place is not None
        parties: Sequence[str] | None = self.opts.peer_parties
        attempt = 0
        while True:
            try:
                await self.ctx.place(room, message, parties)
                reason = None
                break
            except BadInput as exc:  # the core logged and counted it
                reason = str(exc)
                break
            except ShuttingDown:
                return False
            except Exception as exc:  # a store failure: the order needs this one first
                attempt += 1
                delay = backoff(attempt, 0.5, STORE_RETRY_MAX)
                self.ctx.log.error("%s: could not record a message from the peer (%s); "
                                   "retrying in %.1fs", self.ctx.name, exc, delay)
                await asyncio.sleep(delay)
        self.last_message = utcnow()
        await session.answer(n, reason)
        return True

    async def _send_held(self, session: Session) -> None:
        """Send what this side's rooms said, held by the core, to the host, oldest first;
        it is released when it comes back placed (or now, when the host refuses it)."""
        attempt = 0
        while True:
            try:
                await self._send_held_once(session)
            except (ConnectionError, aiohttp.ClientError):
                return  # the session ends; the next one sends everything held again
            except Exception as exc:  # the store: what is held stays held, try again
                attempt += 1
                delay = backoff(attempt, 0.5, STORE_RETRY_MAX)
                self.ctx.log.error("%s: cannot send what is held (%s); again in %.1fs",
                                   self.ctx.name, exc, delay)
                await asyncio.sleep(delay)

    async def _send_held_once(self, session: Session) -> None:
        assert self.ctx.held_after is not None and self.ctx.release is not None
        after = 0
        while True:
            self.ctx.held_signal.clear()
            rows = await self.ctx.held_after(after, HELD_WINDOW)
            if not rows:
                await self.ctx.held_signal.wait()
                continue
            sent: list[tuple[Message, asyncio.Future[str | None]]] = []
            for held_id, room, message in rows:
                sent.append((message, (await session.request(room, message))[1]))
                after = held_id
            for message, future in sent:
                reason = await future
                self.last_message = utcnow()
                if reason is not None:
                    self.ctx.log.error("%s: the host refused message %s (%s); dropped",
                                       self.ctx.name, message.id, reason)
                    await self.ctx.release([message.id])

    # -- the host's order, to the peer -------------------------------------------------------
    async def send(self, out: Outbound) -> str:
        await self._forward(out)
        return out.message.id

    async def edit(self, out: Outbound) -> None:
        await self._forward(out)

    async def delete(self, out: Outbound) -> None:
        await self._forward(out)

    async def _forward(self, out: Outbound) -> None:
        session = self._session
        if session is None:
            raise RoomDown("the link is down")
        try:
            n, future = await session.request(out.room, out.message)
            # no answer in time, but while the peer is still fetching the message's files
            while not (await asyncio.wait({future}, timeout=REPLY_TIMEOUT))[0]:
                if not session.busy(n, REPLY_TIMEOUT):
                    raise TimeoutError
            reason = future.result()
        except (ConnectionError, TimeoutError, aiohttp.ClientError) as exc:
            raise RoomDown(f"the link went down ({exc or 'no answer'})") from None
        if reason is not None:
            raise PermanentError(f"the peer refused it: {reason}")
        self.last_message = utcnow()

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        return None  # rooms are read from ctx at each message


