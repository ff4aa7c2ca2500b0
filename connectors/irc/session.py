"""One IRC identity kept alive: connect, register, join, watch, reconnect.

The session owns the connection and its state (nick, joined channels, the host the
server shows for us) and offers the connector two things: whether a channel can take
a message now, and :meth:`Session.send_lines`, which returns only once the server has
answered a PING sent after the lines, so a line lost with a dying connection is sent
again instead of being reported delivered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from irc.client import Event, ServerNotConnectedError
from irc.client_aio import AioReactor
from irc.strings import lower

from roomlink.connector import ConnectorError, RoomDown, TokenBucket, backoff

from .options import IrcOptions
from .wire import RelayConnection, ssl_context

REGISTER_TIMEOUT = 30.0
JOIN_TIMEOUT = 15.0
STABLE_AFTER = 60.0  # a channel held this long resets the rejoin backoff

# the server refused a line: 404 cannot send, 442 not on channel, 403 no such channel
SEND_ERRORS = {"cannotsendtochan", "notonchannel", "nosuchchannel"}
JOIN_ERRORS = {"channelisfull", "inviteonlychan", "bannedfromchan", "badchannelkey",
               "badchanmask", "toomanychannels", "unavailresource", "needreggednick", "477"}
NICK_ERRORS = {"nicknameinuse", "erroneusnickname", "unavailresource", "nickcollision"}
SASL_DONE = {"saslsuccess", "saslfail", "sasltoolong", "saslaborted", "saslalready",
             "nicklocked", "902"}


class _Reactor(AioReactor):  # type: ignore[misc]
    connection_class = RelayConnection


EventSink = Callable[[Event, bool], None]  # (event, said by the bridge itself)


class Session:
    def __init__(self, opts: IrcOptions, rooms: list[str], sink: EventSink,
                 log: logging.Logger) -> None:
        self.opts = opts
        self.rooms = {lower(r): r for r in rooms}  # IRC channel names are case-insensitive
        self.sink = sink  # gets every event of the live connection, after the session
        self.log = log
        self.conn: RelayConnection | None = None
        self.nick = opts.nick
        self.user: str | None = None  # as the server shows us (ngIRCd adds "~")
        self.host: str | None = None
        rate = 1 / opts.line_interval if opts.line_interval > 0 else None
        self.bucket = TokenBucket(rate, opts.burst_lines)
        self._joined: dict[str, float] = {}  # folded channel -> when joined
        self._ready = {f: asyncio.Event() for f in self.rooms}
        self._changed = {f: asyncio.Event() for f in self.rooms}
        self._keepers: dict[str, asyncio.Task[None]] = {}  # folded channel -> its joiner
        self._serving: RelayConnection | None = None  # registered, channels being joined
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._refused: dict[str, str] = {}  # folded channel -> last error for a line
        self._welcomed = asyncio.Event()
        self._lost = asyncio.Event()
        self._nicks: list[str] = []
        self._last_input = time.monotonic()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._reactor: Any = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._reactor = _Reactor(loop=asyncio.get_running_loop())
        self._reactor.add_global_handler("all_events", self._on_event, -20)
        self._task = asyncio.create_task(self._run(), name=f"irc {self.opts.server}")

    async def stop(self) -> None:
        self._stopping = True
        conn = self.conn
        if conn is not None and conn.connected:
            conn.disconnect("roomlink stopping")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            conn: RelayConnection = self._reactor.server()
            try:
                await self._connect(conn)
                attempt = 0
                await self._serve(conn)
            except (OSError, TimeoutError, ServerNotConnectedError) as exc:
                self.log.warning("IRC %s:%d: %s", self.opts.server,
                                 self.opts.effective_port, exc or type(exc).__name__)
            except Exception:  # a bug must not leave the connector down for good
                self.log.exception("IRC: the connection failed unexpectedly")
            finally:
                self._drop(conn)
            if self._stopping:
                return
            attempt += 1
            delay = backoff(attempt, self.opts.reconnect_initial, self.opts.reconnect_max)
            self.log.info("IRC: reconnecting in %.1fs (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)

    async def _connect(self, conn: RelayConnection) -> None:
        o = self.opts
        self._welcomed, self._lost = asyncio.Event(), asyncio.Event()
        self._nicks = [o.nick, *o.alt_nicks]
        self.nick, self.user, self.host = self._nicks.pop(0), None, None
        self.conn = conn
        self._last_input = time.monotonic()
        await asyncio.wait_for(conn.open(
            o.server, o.effective_port, self.nick,
            username=o.effective_username, realname=o.realname,
            password=o.password.get_secret_value() if o.password else None,
            sasl=o.sasl is not None, tls=ssl_context(o.tls_verify) if o.tls else None,
            fallback_encoding=o.fallback_encoding,
        ), REGISTER_TIMEOUT)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REGISTER_TIMEOUT):
                await _first(self._welcomed, self._lost)
        if self._lost.is_set():
            raise OSError("the server closed the connection during registration")
        if not self._welcomed.is_set():
            raise TimeoutError("no welcome from the server")
        self.log.info("IRC: connected to %s:%d as %s", o.server, o.effective_port, self.nick)
        if o.nickserv_password is not None:
            conn.privmsg("NickServ", f"IDENTIFY {o.nickserv_password.get_secret_value()}")

    async def _serve(self, conn: RelayConnection) -> None:
        self._serving = conn
        for folded in self.rooms:
            self._keep(conn, folded)
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            await self._lost.wait()
        finally:
            self._serving = None
            tasks = [*self._keepers.values(), watchdog]
            self._keepers.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _keep(self, conn: RelayConnection, folded: str) -> None:
        self._keepers[folded] = asyncio.create_task(self._keep_joined(conn, folded),
                                                    name=f"irc join {self.rooms[folded]}")

    def _drop(self, conn: RelayConnection) -> None:
        if conn.connected:
            conn.disconnect()
        with contextlib.suppress(ValueError):
            self._reactor.connections.remove(conn)
        if self.conn is conn:
            self.conn = None
        self._joined.clear()
        for ready in self._ready.values():
            ready.clear()
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(RoomDown("the IRC connection dropped"))
        self._acks.clear()

    @property
    def connected(self) -> bool:
        """Registered with the server (welcomed) on a live connection."""
        return self.conn is not None and self._welcomed.is_set() and not self._lost.is_set()

    # -- channels --------------------------------------------------------------------
    def change_rooms(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Part the ``removed`` channels and join the ``added`` ones on the live connection
        (or at the next connect); the other channels are not touched."""
        conn = self._serving
        for room in removed:
            folded = lower(room)
            if self.rooms.pop(folded, None) is None:
                continue
            keeper = self._keepers.pop(folded, None)
            if keeper is not None:
                keeper.cancel()
            self._joined.pop(folded, None)
            self._ready.pop(folded, None)
            self._changed.pop(folded, None)
            self._refused.pop(folded, None)
            if conn is not None and conn.connected:  # also when a JOIN is still on its way
                with contextlib.suppress(ServerNotConnectedError):
                    conn.send_raw(f"PART {room} :no longer bridged")
        for room in added:
            folded = lower(room)
            if folded in self.rooms:
                continue
            self.rooms[folded] = room
            self._ready[folded] = asyncio.Event()
            self._changed[folded] = asyncio.Event()
            if conn is not None:
                self._keep(conn, folded)

    def is_joined(self, room: str) -> bool:
        return lower(room) in self._joined and self.conn is not None

    async def wait_joined(self, room: str) -> None:
        await self._ready[lower(room)].wait()

    async def _keep_joined(self, conn: RelayConnection, folded: str) -> None:
        o, room, attempt = self.opts, self.rooms[folded], 0
        changed = self._changed[folded]
        keys = {lower(k): v for k, v in o.channel_keys.items()}
        while True:
            if folded in self._joined:
                since = self._joined[folded]
                changed.clear()
                await changed.wait()
                if folded not in self._joined and time.monotonic() - since > STABLE_AFTER:
                    attempt = 0
                continue
            if attempt:
                await asyncio.sleep(backoff(attempt, o.reconnect_initial, o.reconnect_max))
            attempt += 1
            changed.clear()
            key = keys.get(folded)
            conn.send_raw(f"JOIN {room} {key.get_secret_value()}" if key else f"JOIN {room}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), JOIN_TIMEOUT)

    def _set_joined(self, folded: str, joined: bool) -> None:
        if folded not in self.rooms:
            return
        if joined:
            self._joined[folded] = time.monotonic()
            self._ready[folded].set()
        else:
            self._joined.pop(folded, None)
            self._ready[folded].clear()
        self._changed[folded].set()

    # -- sending ---------------------------------------------------------------------
    async def send_lines(self, room: str, lines: list[str]) -> None:
        """Send PRIVMSG lines, paced; return once the server has taken them all."""
        conn, folded = self.conn, lower(room)
        if conn is None:
            raise RoomDown("not connected to IRC")
        self._refused.pop(folded, None)
        try:
            for line in lines:
                await self.bucket.take()
                if self.conn is not conn or folded not in self._joined:
                    raise RoomDown(f"not in {room} on IRC")
                conn.send_raw(f"PRIVMSG {room} :{line}")
            await self._confirm(conn)
        except ServerNotConnectedError:
            raise RoomDown("the IRC connection dropped") from None
        refused = self._refused.pop(folded, None)
        if refused is not None:
            raise ConnectorError(f"the IRC server refused a line for {room}: {refused}")

    async def _confirm(self, conn: RelayConnection) -> None:
        token = "rl" + uuid.uuid4().hex[:16]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[token] = fut
        try:
            conn.send_raw(f"PING :{token}")
            await asyncio.wait_for(asyncio.shield(fut), self.opts.ping_timeout)
        except TimeoutError:
            self.log.warning("IRC: no answer to PING in %.0fs; reconnecting",
                             self.opts.ping_timeout)
            conn.abort()
            raise RoomDown("the IRC server stopped answering") from None
        finally:
            self._acks.pop(token, None)

    async def _watchdog(self, conn: RelayConnection) -> None:
        o = self.opts
        tick = min(1.0, o.ping_interval / 4, o.ping_timeout / 4)
        pinged: float | None = None
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if pinged is not None and self._last_input >= pinged:
                pinged = None
            if pinged is not None and now - pinged > o.ping_timeout:
                self.log.warning("IRC: no answer from the server in %.0fs; reconnecting",
                                 o.ping_timeout)
                conn.abort()
                return
            if pinged is None and now - self._last_input > o.ping_interval:
                conn.send_raw("PING :roomlink-alive")
                pinged = now

    # -- events ----------------------------------------------------------------------
    def _on_event(self, conn: Any, event: Event) -> None:
        if conn is not self.conn or self.conn is None:
            return  # a stale connection's last words
        try:
            source = getattr(event.source, "nick", None) if event.source else None
            from_me = source is not None and lower(source) == lower(self.nick)
            self._handle(self.conn, event, source, from_me)
            if event.type != "all_raw_messages":
                self.sink(event, from_me)
        except Exception:  # a bug here must not cost the connection
            self.log.exception("IRC: handling %s failed", event.type)

    def _handle(
        self, conn: RelayConnection, event: Event, source: str | None, from_me: bool
    ) -> None:
        kind = event.type
        me = lower(self.nick)
        if kind == "all_raw_messages":
            self._last_input = time.monotonic()
        elif kind == "disconnect":
            self._lost.set()
        elif kind == "welcome":
            self.nick = event.target or self.nick
            self._welcomed.set()
        elif kind in NICK_ERRORS and not self._welcomed.is_set():
            self._next_nick(conn, event)
        elif kind == "join" and from_me:
            self.user, self.host = event.source.user, event.source.host
            self._set_joined(lower(event.target), True)
        elif kind == "part" and from_me:
            self._set_joined(lower(event.target), False)
        elif kind == "kick" and event.arguments and lower(event.arguments[0]) == me:
            self.log.warning("IRC: kicked from %s by %s: %s", event.target, source,
                             event.arguments[1] if len(event.arguments) > 1 else "")
            self._set_joined(lower(event.target), False)
        elif kind == "nick" and from_me:
            self.nick = event.target
        elif kind == "pong" and event.arguments:
            fut = self._acks.get(event.arguments[-1])
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind in SEND_ERRORS and event.arguments:
            self._refused[lower(event.arguments[0])] = event.arguments[-1]
        elif kind in JOIN_ERRORS and event.arguments:
            folded = lower(event.arguments[0])
            if folded in self.rooms:
                self.log.warning("IRC: cannot join %s: %s", event.arguments[0],
                                 event.arguments[-1])
                self._changed[folded].set()
        elif kind in ("cap", "authenticate") or kind in SASL_DONE:
            self._sasl(conn, event)
        elif kind == "error":
            self.log.warning("IRC: server error: %s", event.target)

    def _next_nick(self, conn: RelayConnection, event: Event) -> None:
        taken = self.nick
        if self._nicks:
            self.nick = self._nicks.pop(0)
        else:
            self.nick = f"{self.opts.nick[:12]}{random.randint(100, 999)}"
        self.log.warning("IRC: nick %s refused (%s); trying %s", taken, event.type, self.nick)
        conn.send_raw(f"NICK {self.nick}")

    def _sasl(self, conn: RelayConnection, event: Event) -> None:
        sasl = self.opts.sasl
        if sasl is None:
            return
        args = [str(a) for a in event.arguments]
        if event.type == "cap" and args and args[0] == "ACK" and "sasl" in " ".join(args[1:]):
            conn.send_raw("AUTHENTICATE PLAIN")
        elif event.type == "cap" and args and args[0] == "NAK":
            self.log.error("IRC: the server refused SASL; going on without it")
            conn.send_raw("CAP END")
        elif event.type == "authenticate" and event.target == "+":
            secret = sasl.password.get_secret_value()
            blob = f"{sasl.username}\0{sasl.username}\0{secret}".encode()
            encoded = base64.b64encode(blob).decode()
            for i in range(0, len(encoded), 400):  # SASL's chunking
                conn.send_raw(f"AUTHENTICATE {encoded[i:i + 400]}")
            if len(encoded) % 400 == 0:
                conn.send_raw("AUTHENTICATE +")
        elif event.type in SASL_DONE:
            if event.type != "saslsuccess":
                self.log.error("IRC: SASL login failed (%s)", event.type)
            conn.send_raw("CAP END")


async def _first(a: asyncio.Event, b: asyncio.Event) -> None:
    """Wait until either event is set."""
    waits = [asyncio.create_task(a.wait()), asyncio.create_task(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
