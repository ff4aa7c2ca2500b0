"""``type: xmpp``: one account in multi-user chat rooms; rooms are MUC addresses.

Inbound, every groupchat message of a room goes through one queue, in the server's
order, to ``ctx.hand_in``; the room's archive id of the last one handled (XEP-0359
stanza id, with its time) is a cursor in the party's store, moved only after the
hand-in returned. On every join the bridge asks for no history and reads the room's
archive (XEP-0313) after that cursor instead, so what was said while it was away arrives
once, and what it had already stored is not relayed again.

Messages are named by the room's stanza id everywhere (replies and retractions name
them so in a MUC, XEP-0461 and XEP-0424). Corrections (XEP-0308) name the sender's own
id; the :class:`Ledger` maps between the two, from what it saw and from the archive,
and knows who wrote what: a correction or retraction of a message its sender did not
write is dropped with a log line, never relayed.

Outbound, a message's id is derived from its delivery key and sends wait until the
room's archive was read after a join: an attempt repeated after a lost connection finds
the room's echo of the first one (live or archived) and is not posted twice.

Files: a message's files are put on the upload service (upload.py) and follow its text
as one message each whose body is the file's URL with an OOB element naming it
(XEP-0066): that is what Conversations, Dino and Gajim show inline as the file, which
they do not for a link inside a text. The room's ids of those messages are the cursor
``parts:ROOM:ID`` of the text's, so that a delete retracts them all, after a restart
too. Files people share by OOB link are fetched into the stores before the hand-in
(download.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import aiohttp
from slixmpp import JID, Message, Presence
from slixmpp.jid import InvalidJID
from slixmpp.xmlstream import ET

from roomlink.connector import (
    Connector,
    ConnectorError,
    ConnectorOptions,
    FileRefused,
    Limits,
    PermanentError,
    RoomDown,
)
from roomlink.message.markup import escape
from roomlink.message.model import Inbound, InboundAuthor, Kind, Outbound, utcnow

from .archive import CatchUp, iso
from .convert import body_of, needs_unstyled
from .download import Downloader, as_link
from .inbound import OCCUPANT, Said, read, room_stanza_id, sender_id
from .ledger import Ledger
from .options import XmppOptions
from .session import Session
from .upload import Uploader

ItemKind = Literal["catch_up", "message", "presence"]
SEEN_MEMORY = 10_000  # room stanza ids already handled, against the archive's overlap
OOB_X, OOB_URL = "{jabber:x:oob}x", "{jabber:x:oob}url"


class XmppConnector(Connector):
    platform = "xmpp"
    Options = XmppOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, XmppOptions)
        self.opts = options
        self.session = Session(options, list(ctx.rooms), self, ctx.log, ctx.name)
        self.ledger = Ledger(self.session, ctx.log, ctx.name)
        self.archive = CatchUp(self.session, options, ctx, self._take)
        self.uploader = Uploader(self.session, options, ctx.log, ctx.name)
        self.downloader = Downloader(lambda: self.ctx.files, lambda: self.uploader.limit,
                                     options.download_timeout)
        self._http: aiohttp.ClientSession | None = None  # for files, made when first used
        self._discovery: asyncio.Task[None] | None = None
        # (delivery key, file index) -> the GET URL of the file already uploaded for it:
        # a send tried again does not upload again
        self._uploaded: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._relayed = set(ctx.inbound_rooms)
        self._queue: asyncio.Queue[tuple[ItemKind, str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}  # sent id -> the room's id
        self._sent: OrderedDict[str, None] = OrderedDict()  # ids of what the bridge sent
        # (room, id of a message the bridge sent) -> the room's id, from its echo: a send
        # tried again (the connection dropped before the answer) is not posted twice
        self._echoed: OrderedDict[tuple[str, str], str] = OrderedDict()
        # set once a room's archive was read after the join: sends wait for it
        self._caught_up = {room: asyncio.Event() for room in ctx.rooms}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._occupants: dict[str, set[str]] = {}  # nicks in each room: who joins anew
        self._present: dict[str, set[str]] = {}  # who was there when the bot came in
        # the bot's own occupant id in each room (XEP-0421): its messages of an earlier
        # nick are its own too
        self._own: dict[str, str] = {}

    @property
    def limits(self) -> Limits:
        return Limits(max_text_length=10_000, can_impersonate=False,
                      default_nick_format="<{nick}> ", edits=True, deletes=True,
                      room_rates=((5.0, 30),), files=not self.uploader.missing,
                      max_file_bytes=self.uploader.limit)

    @classmethod
    def normalize_room(cls, room: str) -> str:
        try:
            jid = JID(room.strip())
        except InvalidJID:
            jid = None
        if jid is None or not jid.user or not jid.domain or jid.resource:
            raise ValueError(f"{room!r} is not a multi-user chat room: write its address, "
                             "e.g. project@conference.example.org")
        return str(jid.bare).lower()

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name=f"{self.ctx.name} inbound")
        self.session.start()

    async def stop(self) -> None:
        await self.session.stop()
        for task in (self._worker, self._discovery):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            verify = self.opts.tls_verify  # false: self-signed test servers, HTTP too
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=verify))
        return self._http

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # the XMPP session stays: only the added MUCs are joined and the removed ones left
        self._relayed = set(self.ctx.inbound_rooms)
        for room in added:  # set again once the room's archive was read after the join
            self._caught_up.setdefault(room, asyncio.Event())
        self.session.change_rooms(added, removed)

    def is_connected(self) -> bool:
        return self.session.connected

    def is_ready(self, room: str) -> bool:
        caught_up = self._caught_up.get(room)  # None: a reload is adding it
        return self.session.joined(room) and caught_up is not None and caught_up.is_set()

    async def wait_ready(self, room: str) -> None:
        while not self.is_ready(room):
            await self.session.wait_joined(room)
            await self._caught_up[room].wait()

    # -- what the session hears (called in the server's order) -------------------------
    def entered(self, room: str, pres: Presence) -> None:
        self._occupants[room] = self._present.pop(room, set())
        self._caught_up[room].clear()
        occupant = pres.xml.find(OCCUPANT)
        if occupant is not None and occupant.get("id"):  # how the room names the bot
            self._own[room] = f"occupant:{occupant.get('id')}"
        self._queue.put_nowait(("catch_up", room, None))
        if self._discovery is None or self._discovery.done():  # the upload limit, early
            self._discovery = asyncio.get_running_loop().create_task(self._discover())

    async def _discover(self) -> None:
        with contextlib.suppress(ConnectorError):  # tried again with the first upload
            await self.uploader.discover()

    def message(self, room: str, msg: Message, history: bool) -> None:
        sent = sender_id(msg)
        if sent is not None and sent in self._pending:
            future = self._pending[sent]
            if not future.done():
                future.set_result(room_stanza_id(msg, room) or sent)
            said = read(msg, room, None, None)
            self.ledger.remember(room, said)  # before send() returns
            self._note_echo(room, said)
        if not history:
            self._queue.put_nowait(("message", room, msg))

    def presence(self, room: str, pres: Presence, initial: bool) -> None:
        if not initial:
            self._queue.put_nowait(("presence", room, pres))
        elif pres["type"] != "unavailable" and pres["from"].resource:
            self._present.setdefault(room, set()).add(pres["from"].resource)

    def message_error(self, room: str, msg: Message) -> None:
        future = self._pending.get(msg["id"])
        if future is None or future.done():
            return
        condition, text = msg["error"]["condition"], msg["error"]["text"] or ""
        what = f"{room} refused the message: {condition} {text}".strip()
        if condition in ("not-acceptable", "item-not-found"):  # not (or no longer) in it
            self.session.lost(room)
            future.set_exception(RoomDown(what))
        elif condition in ("forbidden", "not-allowed", "policy-violation", "bad-request"):
            future.set_exception(PermanentError(what))
        else:
            future.set_exception(ConnectorError(what))

    def disconnected(self) -> None:
        for event in self._caught_up.values():
            event.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RoomDown("the XMPP connection was lost"))

    # -- inbound, one item at a time ---------------------------------------------------
    async def _work(self) -> None:
        while True:
            what, room, stanza = await self._queue.get()
            try:
                if what == "catch_up":
                    ok = await self.archive.catch_up(room)
                elif what == "message":
                    ok = await self._take(room, stanza, None, None)
                else:
                    ok = await self._presence(room, stanza)
            except asyncio.CancelledError:
                raise
            except Exception:  # one unreadable stanza must not end the inbound loop
                self.ctx.log.exception("%s: skipping a stanza from %s that cannot be read",
                                       self.ctx.name, room)
                ok = True
            if what == "catch_up":
                self._caught_up[room].set()  # what waited for the room goes out now
            if not ok:
                return  # shutting down: the cursor stays where it was

    async def _take(self, room: str, msg: Message, archive_id: str | None,
                    stamp: datetime | None) -> bool:
        said = read(msg, room, archive_id, stamp)
        sid = said.stanza_id
        if sid is not None:
            if (room, sid) in self._seen:
                return True  # already handled: the archive and the live stream overlap
        if not await self._relay(room, said, live=archive_id is None):
            return False
        if sid is not None:
            self._seen[(room, sid)] = None
            if len(self._seen) > SEEN_MEMORY:
                self._seen.popitem(last=False)
            await self.ctx.set_cursor(f"archive:{room}", f"{sid} {iso(said.ts)}")
        return True

    async def _relay(self, room: str, said: Said, live: bool) -> bool:
        mine = (said.nick == self.session.nick(room) or said.author == self._own.get(room)
                or said.msg_id in self._sent)
        self.ledger.remember(room, said)
        if mine:
            self._note_echo(room, said)
        if mine or not said.nick or room not in self._relayed:
            return True
        event = Inbound(room=room, author=InboundAuthor(name=said.nick, id=said.author),
                        text=said.text, kind=said.kind, native_id=said.stanza_id or said.msg_id,
                        reply_to_native=said.reply_to, attachments=said.attachments,
                        ts=said.ts or utcnow())
        if said.kind is Kind.DELETE:
            assert said.retracts is not None
            if not await self.ledger.wrote(room, said.author, said.retracts):
                self._refuse(room, said, "retraction", said.retracts)
                return True
            event.target_native = said.retracts
        elif said.kind is Kind.EDIT:
            assert said.replaces is not None
            target = await self.ledger.original(room, said.author, said.replaces)
            if target is None:
                self._refuse(room, said, "correction", said.replaces)
                return True
            event.target_native = target
        elif said.kind is Kind.TOPIC:
            if not live:
                return True
        elif not said.text.strip() and not said.attachments:
            return True
        if said.kind in (Kind.MESSAGE, Kind.ACTION):  # the files, kept before the hand-in
            event.attachments = [
                a if not a.url else await self.downloader.keep(self.http(), room, a.url)
                if self.opts.download_files else as_link(a.url) for a in said.attachments]
        return await self.ctx.hand_in(event)

    def _note_echo(self, room: str, said: Said) -> None:
        if said.msg_id and said.stanza_id:
            self._echoed[(room, said.msg_id)] = said.stanza_id
            if len(self._echoed) > SEEN_MEMORY:
                self._echoed.popitem(last=False)

    def _refuse(self, room: str, said: Said, what: str, target: str) -> None:
        self.ctx.log.warning(
            "%s: not relayed: a %s in %s by %s of message %s, which %s did not write (or "
            "which is not in the room's archive)", self.ctx.name, what, room, said.nick,
            target, said.nick)

    async def _presence(self, room: str, pres: Presence) -> bool:
        nick = pres["from"].resource
        members = self._occupants.setdefault(room, set())
        codes = set(pres["muc"]["status_codes"])
        if not nick or room not in self._relayed:
            return True
        if pres["type"] == "unavailable":
            members.discard(nick)
            if 303 in codes and pres["muc"]["item_nick"]:
                new = pres["muc"]["item_nick"]
                members.add(new)
                text, kind, who = f"{nick} is now known as {new}", Kind.JOIN, new
            else:
                reason = (pres["status"] or "").strip()
                what = "was kicked" if 307 in codes else "was banned" if 301 in codes else "left"
                text, kind, who = f"{what} ({reason})" if reason else what, Kind.PART, nick
        elif nick in members:
            return True  # a status change, not a join
        else:
            members.add(nick)
            text, kind, who = "joined", Kind.JOIN, nick
        return await self.ctx.hand_in(Inbound(room=room, author=InboundAuthor(name=who),
                                              text=escape(text), kind=kind, ts=utcnow()))

    # -- outbound ----------------------------------------------------------------------
    async def _post(self, room: str, key: str, body: str, styled: bool,
                    extra: list[ET.Element]) -> str:
        """Send one groupchat message; return the room's id for it once it came back.

        Its id comes from the delivery key, the same on every attempt: when the room
        echoed an earlier attempt (seen live or in the archive), it is not sent again."""
        msg_id = _msg_id(key)
        if (room, msg_id) in self._echoed:
            return self._echoed[(room, msg_id)]
        if not self.is_ready(room):
            raise RoomDown(f"not in {room} now")
        msg = self.session.new_message(room)
        msg["id"] = msg_id
        msg["body"] = body
        msg["origin_id"]["id"] = msg_id
        if not styled:
            msg.append(ET.Element("{urn:xmpp:styling:0}unstyled"))
        for element in extra:
            msg.append(element)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._sent[msg_id] = None
        if len(self._sent) > SEEN_MEMORY:
            self._sent.popitem(last=False)
        try:
            msg.send()
            return await asyncio.wait_for(asyncio.shield(future), self.opts.send_timeout)
        except TimeoutError:
            # it went out, but the room did not echo it in time: keep our own id for it
            self.ctx.log.warning("%s: %s did not echo message %s within %.0fs",
                                 self.ctx.name, room, msg_id, self.opts.send_timeout)
            return str(msg_id)
        finally:
            self._pending.pop(msg_id, None)

    async def send(self, out: Outbound) -> str:
        extra = []
        if out.reply_to_native and out.part == 0:
            reply = ET.Element("{urn:xmpp:reply:0}reply", {"id": out.reply_to_native})
            author = self.ledger.nick_of(out.room, out.reply_to_native)
            if author:
                reply.set("to", f"{out.room}/{author}")
            extra.append(reply)
        # every file is uploaded before anything is posted: a file the service refuses
        # (FileRefused: the core sends the text with a line for it) leaves nothing behind
        urls = [await self._upload(out, index) for index in range(len(out.files))]
        text = out.text
        if out.files and not text.strip():  # the files' author still says who sent them
            text = escape("sent " + ", ".join(a.name or "a file" for a in out.files))
        first = await self._post(out.room, out.delivery_key, body_of(out, text),
                                 not needs_unstyled(text), extra)
        parts = []
        for index, url in enumerate(urls):
            oob = ET.Element(OOB_X)
            ET.SubElement(oob, OOB_URL).text = url
            parts.append(await self._post(out.room, _file_key(out, index), url, True, [oob]))
        for index in range(len(out.files)):
            self._uploaded.pop((out.delivery_key, index), None)
        if parts:  # a delete must find every message of the copy, after a restart too
            await self.ctx.set_cursor(f"parts:{out.room}:{first}", " ".join(parts))
        return first

    async def _upload(self, out: Outbound, index: int) -> str:
        """The GET URL of ``out``'s file ``index``: uploaded now, unless an earlier attempt
        did (or even posted it: the room echoed its message, which is not sent again)."""
        if (out.room, _msg_id(_file_key(out, index))) in self._echoed:
            return ""
        done = self._uploaded.get((out.delivery_key, index))
        if done is None:
            if self.ctx.files is None:
                raise FileRefused("this roomlink keeps no files")
            done = await self.uploader.upload(self.http(), self.ctx.files, out.files[index])
            self._uploaded[(out.delivery_key, index)] = done
            if len(self._uploaded) > SEEN_MEMORY:
                self._uploaded.popitem(last=False)
        return done

    async def edit(self, out: Outbound) -> None:
        target = out.target_native
        if not target:
            return
        own_id = await self.ledger.sender_id_of(out.room, target)
        if own_id is None:
            raise PermanentError(f"message {target} is not in the archive of {out.room} "
                                 "any more: it cannot be corrected")
        replace = ET.Element("{urn:xmpp:message-correct:0}replace", {"id": own_id})
        await self._post(out.room, out.delivery_key, body_of(out),
                         not needs_unstyled(out.text), [replace])

    async def delete(self, out: Outbound) -> None:
        target = out.target_native
        if not target:
            return
        parts = await self.ctx.get_cursor(f"parts:{out.room}:{target}") or ""
        for index, native in enumerate([target, *parts.split()]):
            retract = ET.Element("{urn:xmpp:message-retract:1}retract", {"id": native})
            fallback = ET.Element("{urn:xmpp:fallback:0}fallback",
                                  {"for": "urn:xmpp:message-retract:1"})
            store = ET.Element("{urn:xmpp:hints}store")
            key = out.delivery_key + (f"\x00part{index}" if index else "")
            await self._post(out.room, key, "(a message was deleted)", False,
                             [retract, fallback, store])


def _msg_id(key: str) -> str:
    return "rl-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _file_key(out: Outbound, index: int) -> str:
    return f"{out.delivery_key}\x00file{index}"
