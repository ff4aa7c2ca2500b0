"""The session with the XMPP server: connect, log in, join the rooms, stay joined.

slixmpp does the protocol; this wraps what the bridge needs around it: a supervisor that
reconnects with backoff, a join per room that is retried until the room takes it (a
nick in use gets a ``_`` appended), the room's own messages and presences handed to a
:class:`Listener` in the order the server sent them, and archive (XEP-0313) pages.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

import slixmpp
from slixmpp import JID, Iq, Message, Presence
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from roomlink.connector import backoff

from .options import XmppOptions

PLUGINS = ("xep_0030", "xep_0045", "xep_0059", "xep_0199", "xep_0203", "xep_0297",
           "xep_0308", "xep_0313", "xep_0359", "xep_0421", "xep_0424", "xep_0428",
           "xep_0461", "xep_0066", "xep_0363")
MAM_TIMEOUT = 30  # seconds for one archive page
LOGIN_TIMEOUT = 60  # seconds from connecting to a session, or the attempt is dropped
SELF = 110  # the status code of one's own presence in a room (XEP-0045)


class Listener(Protocol):
    """What the connector hears from the session (all called from slixmpp's handlers)."""

    def entered(self, room: str, pres: Presence) -> None: ...
    def message(self, room: str, msg: Message, history: bool) -> None: ...
    def presence(self, room: str, pres: Presence, initial: bool) -> None: ...
    def message_error(self, room: str, msg: Message) -> None: ...
    def disconnected(self) -> None: ...


@dataclass
class ArchivePage:
    """One page of a room's archive, oldest first: (archive id, time, message)."""

    items: list[tuple[str, datetime | None, Message]] = field(default_factory=list)
    complete: bool = True
    first: str | None = None
    last: str | None = None


class ArchiveError(Exception):
    """The archive refused the query; ``condition`` is the XMPP error condition."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition


@dataclass
class RoomState:
    nick: str
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    subject_seen: bool = False  # the subject ends the join: what came before is history
    attempts: int = 0
    retry: asyncio.Task[None] | None = None


class Session:
    def __init__(self, opts: XmppOptions, rooms: list[str], listener: Listener,
                 log: logging.Logger, name: str) -> None:
        self.opts = opts
        self.listener = listener
        self.log = log
        self.name = name
        self.rooms = {room: RoomState(opts.nick) for room in rooms}
        self.client = self._make_client()
        self.connected = False
        self._over: asyncio.Future[bool] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._logged_in = asyncio.Event()
        self._pinger: asyncio.Task[None] | None = None
        self._mam_results: dict[str, list[Message]] = {}
        self._stopping = False

    # -- life --------------------------------------------------------------------------
    def _make_client(self) -> slixmpp.ClientXMPP:
        opts = self.opts
        client = slixmpp.ClientXMPP(opts.jid, opts.password.get_secret_value())
        for plugin in PLUGINS:
            client.register_plugin(plugin)
        client.enable_direct_tls = opts.tls == "direct"
        client.enable_starttls = opts.tls == "starttls"
        client.enable_plaintext = opts.tls == "none"
        if opts.tls == "none":  # a local test server: SCRAM over plain TCP is allowed
            client.plugin["feature_mechanisms"].unencrypted_scram = True
        if not opts.tls_verify:
            client.ssl_context.check_hostname = False
            client.ssl_context.verify_mode = ssl.CERT_NONE
        client.add_event_handler("session_start", self._on_session_start)
        client.add_event_handler("disconnected", self._on_disconnected)
        client.add_event_handler("connection_failed", self._on_connection_failed)
        client.add_event_handler("failed_all_auth", self._on_failed_auth)
        client.add_event_handler("groupchat_presence", self._on_presence)
        client.register_handler(Callback("roomlink groupchat",
                                         StanzaPath("message@type=groupchat"), self._on_message))
        client.register_handler(Callback("roomlink message error",
                                         StanzaPath("message@type=error"), self._on_error))
        client.register_handler(Callback("roomlink presence error",
                                         StanzaPath("presence@type=error"),
                                         self._on_presence_error))
        client.register_handler(Callback("roomlink archive", StanzaPath("message/mam_result"),
                                         self._on_mam_result))
        return client

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name} session")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        for state in self.rooms.values():
            if state.retry is not None:
                state.retry.cancel()
        if self._pinger is not None:
            self._pinger.cancel()
        if self.connected:
            for room, state in self.rooms.items():
                if state.joined.is_set():  # leave: the room tells the others at once
                    self.client.send_presence(pto=JID(f"{room}/{state.nick}"),
                                              ptype="unavailable")
            try:
                await asyncio.wait_for(self.client.disconnect(wait=2.0), 5)
            except (TimeoutError, Exception) as exc:
                self.log.debug("%s: closing the XMPP stream: %s", self.name, exc)
        self.client.cancel_connection_attempt()
        self.client.abort()

    async def _supervise(self) -> None:
        """Connect, and again after every loss, waiting longer after each failure."""
        failures = 0
        while True:
            self._over = asyncio.get_running_loop().create_future()
            self.client.cancel_connection_attempt()
            opts = self.opts
            host = opts.server or (opts.account.domain if opts.port else None)
            if host is not None:
                self.client.connect(host, opts.effective_port)
            else:
                self.client.connect()  # the domain's SRV records, then the domain itself
            self.log.info("%s: connecting to %s", self.name, host or opts.account.domain)
            login = asyncio.ensure_future(self._logged_in.wait())
            waiting: set[asyncio.Future[Any]] = {login, self._over}
            await asyncio.wait(waiting, timeout=LOGIN_TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
            login.cancel()
            if not self._over.done() and not self._logged_in.is_set():
                self.log.warning("%s: no session within %ds of connecting; dropping the "
                                 "attempt", self.name, LOGIN_TIMEOUT)
                self.client.cancel_connection_attempt()
                self.client.abort()
                self._end(False)
            started = await self._over
            self._logged_in.clear()
            failures = 0 if started else failures + 1
            delay = backoff(max(failures, 1), opts.reconnect_initial, opts.reconnect_max)
            self.log.warning("%s: disconnected from the XMPP server; reconnecting in %.1fs",
                             self.name, delay)
            await asyncio.sleep(delay)

    def _end(self, started: bool) -> None:
        if self._over is not None and not self._over.done():
            self._over.set_result(started)

    def _on_session_start(self, _: Any) -> None:
        self.connected = True
        self._logged_in.set()
        self._pinger = asyncio.get_running_loop().create_task(self._keepalive())
        self.log.info("%s: logged in as %s", self.name, self.client.boundjid)
        self.client.send_presence()
        for room in self.rooms:
            self.rooms[room].attempts = 0
            self._join(room)

    def _on_disconnected(self, reason: Any) -> None:
        was = self.connected
        self.connected = False
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        for state in self.rooms.values():
            state.joined.clear()
            state.subject_seen = False
            if state.retry is not None:
                state.retry.cancel()
                state.retry = None
        self.listener.disconnected()
        if not self._stopping:
            if reason:
                self.log.info("%s: connection closed (%s)", self.name, reason)
            self._end(was)

    async def _keepalive(self) -> None:
        """Ping the server now and then: a connection that went silent is dropped (the
        supervisor then reconnects) instead of holding messages forever."""
        while True:
            await asyncio.sleep(self.opts.ping_interval)
            try:  # XEP-0199
                await self.client.plugin["xep_0199"].ping(JID(self.client.boundjid.host),
                                                          timeout=self.opts.ping_timeout)
            except IqTimeout:
                self.log.warning("%s: the server did not answer a ping for %.0fs; "
                                 "reconnecting", self.name, self.opts.ping_timeout)
                self.client.abort()
                return
            except IqError:
                pass  # an answer, even an error, shows the connection is alive

    def _on_connection_failed(self, error: Any) -> None:
        self.log.warning("%s: cannot connect to the XMPP server: %s", self.name, error)
        self.client.cancel_connection_attempt()  # the supervisor decides when to retry
        self._end(False)

    def _on_failed_auth(self, _: Any) -> None:
        self.log.error("%s: the server refused the login of %s: check the connector's jid "
                       "and password", self.name, self.opts.jid)
        self.client.abort()

    # -- rooms -------------------------------------------------------------------------
    def change_rooms(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Leave the ``removed`` rooms and join the ``added`` ones in the live session (or
        at the next login); the other rooms are not touched."""
        for room in removed:
            state = self.rooms.pop(room, None)
            if state is None:
                continue
            if state.retry is not None:
                state.retry.cancel()
            if self.connected:  # the room tells the others at once
                self.client.send_presence(pto=JID(f"{room}/{state.nick}"), ptype="unavailable")
        for room in added:
            if room in self.rooms:
                continue
            self.rooms[room] = RoomState(self.opts.nick)
            if self.connected:
                self._join(room)

    def joined(self, room: str) -> bool:
        state = self.rooms.get(room)  # None: a reload is adding or removing it
        return state is not None and state.joined.is_set()

    async def wait_joined(self, room: str) -> None:
        await self.rooms[room].joined.wait()

    def nick(self, room: str) -> str:
        return self.rooms[room].nick

    def _join(self, room: str) -> None:
        state = self.rooms[room]
        state.subject_seen = False
        muc = self.client.plugin["xep_0045"]
        # no history on join: what was said while roomlink was away comes from the archive
        muc.make_join_stanza(JID(room), state.nick, maxstanzas=0).send()
        state.retry = asyncio.get_running_loop().create_task(self._join_watchdog(room))

    async def _join_watchdog(self, room: str) -> None:
        state = self.rooms[room]
        await asyncio.sleep(self.opts.join_timeout)
        if not state.joined.is_set() and self.connected:
            self.log.warning("%s: no answer to joining %s; trying again", self.name, room)
            state.retry = None
            self._rejoin_later(room)

    def lost(self, room: str) -> None:
        """The room says the bot is not in it (a message refused): join it again."""
        state = self.rooms[room]
        if state.joined.is_set():
            state.joined.clear()
            self.log.warning("%s: %s says roomlink is not in it; joining again", self.name,
                             room)
            self._rejoin_later(room)

    def _rejoin_later(self, room: str) -> None:
        state = self.rooms[room]
        if state.retry is not None:
            state.retry.cancel()
        state.attempts += 1
        delay = backoff(state.attempts, self.opts.reconnect_initial, self.opts.reconnect_max)

        async def later() -> None:
            await asyncio.sleep(delay)
            if self.connected and not state.joined.is_set():
                self._join(room)

        state.retry = asyncio.get_running_loop().create_task(later())

    def _room_of(self, jid: JID) -> str | None:
        room = str(jid.bare).lower()
        return room if room in self.rooms else None

    def _on_presence(self, pres: Presence) -> None:
        room = self._room_of(pres["from"])
        if room is None or self._stopping:
            return
        state = self.rooms[room]
        codes = set(pres["muc"]["status_codes"])
        mine = SELF in codes or pres["from"].resource == state.nick
        if not mine:  # before the bot's own presence: who is in the room already
            self.listener.presence(room, pres, not state.joined.is_set())
            return
        if pres["type"] == "unavailable":
            if 303 in codes and pres["muc"]["item_nick"]:  # our nick was changed
                state.nick = pres["muc"]["item_nick"]
                return
            if state.joined.is_set() or SELF in codes:
                state.joined.clear()
                self.log.warning("%s: removed from %s (status %s); joining again", self.name,
                                 room, sorted(codes) or "none")
                self._rejoin_later(room)
            return
        if not state.joined.is_set():
            state.nick = pres["from"].resource or state.nick
            state.attempts = 0
            if state.retry is not None:
                state.retry.cancel()
                state.retry = None
            self.log.info("%s: joined %s as %s", self.name, room, state.nick)
            self.listener.entered(room, pres)  # before any message said after the join
            state.joined.set()

    def _on_presence_error(self, stanza: StanzaBase) -> None:
        pres = cast(Presence, stanza)
        room = self._room_of(pres["from"])
        if room is None:
            return
        state = self.rooms[room]
        condition = pres["error"]["condition"]
        if condition == "conflict":  # the nick is taken in that room
            state.nick += "_"
            self.log.warning("%s: nick in use in %s; trying %s", self.name, room, state.nick)
        else:
            self.log.error("%s: cannot join %s (%s %s); trying again later", self.name, room,
                           condition, pres["error"]["text"] or "")
        state.joined.clear()
        self._rejoin_later(room)

    def _on_message(self, stanza: StanzaBase) -> None:
        msg = cast(Message, stanza)
        room = self._room_of(msg["from"])
        if room is None:
            return
        state = self.rooms[room]
        is_subject = msg.xml.find("{jabber:client}subject") is not None and not msg["body"]
        history = not state.subject_seen and (
            is_subject or msg.xml.find("{urn:xmpp:delay}delay") is not None)
        if is_subject:
            state.subject_seen = True
        self.listener.message(room, msg, history)

    def _on_error(self, stanza: StanzaBase) -> None:
        msg = cast(Message, stanza)
        room = self._room_of(msg["from"])
        if room is not None:
            self.listener.message_error(room, msg)

    # -- sending and the archive -------------------------------------------------------
    def new_message(self, room: str) -> Message:
        msg = self.client.make_message(mto=JID(room), mtype="groupchat")
        msg["id"] = msg["id"] or self.client.new_id()
        return msg

    def _on_mam_result(self, stanza: StanzaBase) -> None:
        msg = cast(Message, stanza)
        query = msg["mam_result"]["queryid"]
        if query in self._mam_results and not msg["from"].resource:
            self._mam_results[query].append(msg)

    async def archive_page(self, room: str, *, after: str | None = None, last: bool = False,
                           before: str | None = None, start: datetime | None = None,
                           size: int = 100) -> ArchivePage:
        """One page of ``room``'s archive: after an id, before one, or the newest."""
        iq: Iq = self.client.make_iq_set(ito=JID(room))
        query = iq["id"]
        iq["mam"]["queryid"] = query
        if start is not None:
            iq["mam"]["start"] = start
        iq["mam"]["rsm"]["max"] = str(size)
        if after is not None:
            iq["mam"]["rsm"]["after"] = after
        if last or before is not None:
            iq["mam"]["rsm"]["before"] = before or True
        self._mam_results[query] = []
        try:
            result = await cast(Any, iq).send(timeout=MAM_TIMEOUT)  # untyped in slixmpp
        except IqError as exc:
            error = exc.iq["error"]
            raise ArchiveError(error["condition"], error["text"] or "") from None
        except IqTimeout:
            raise ArchiveError("timeout", "the archive did not answer") from None
        finally:
            messages = self._mam_results.pop(query, [])
        fin = result["mam_fin"]
        page = ArchivePage(complete=fin["complete"] in ("true", "1"),  # "false" is a str too
                           first=fin["rsm"]["first"] or None, last=fin["rsm"]["last"] or None)
        for wrapper in messages:
            result_el = wrapper["mam_result"]
            forwarded = result_el["forwarded"]
            stamp = forwarded["delay"]["stamp"] or None
            page.items.append((result_el["id"], stamp, forwarded["stanza"]))
        return page

