"""``type: matrix``: one bot account; rooms are room ids (``!abc:example.org``) or aliases.

Inbound, the connector long-polls ``/sync`` itself. The sync token is a cursor in the
party's store that moves past a batch only once ``ctx.hand_in`` returned True for every
event in it, so a crash re-reads the batch and the event ids (the native ids) make the
second reading a no-op. On a first start, with no token stored, the first sync only
takes the token: what was said before is not relayed. Outbound, a message is one
``m.room.message`` whose transaction id is derived from the delivery, so a resend after a
crash is the same event. Encrypted rooms are read and written through matrix-nio's
vodozemac machine, trusting the room's devices; its keys live in ``key_store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any

import aiohttp
from nio import (
    ErrorResponse,
    JoinedRoomsResponse,
    LocalProtocolError,
    RoomGetStateEventResponse,
    RoomResolveAliasResponse,
    SendRetryError,
    SyncResponse,
)

from roomlink.connector import (
    Connector,
    ConnectorError,
    ConnectorOptions,
    Limits,
    PermanentError,
    RateLimited,
    RoomDown,
    ShuttingDown,
    backoff,
)
from roomlink.message.model import Attachment, Kind, Outbound

from .convert import compose, edit_content
from .inbound import events
from .media import DEFAULT_MAX, Media, remote_file
from .options import MatrixOptions
from .session import log_in, make_client
from .timeline import TimelineReader

# room ids of room version 12 on have no ":server" part any more
ROOM = re.compile(r"![^\s:]+(:\S+)?|#[^:\s]+:\S+")
REJOIN_INITIAL, REJOIN_MAX = 2.0, 300.0


class MatrixConnector(Connector):
    platform = "matrix"
    Options = MatrixOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, MatrixOptions)
        self.opts = options
        self.client: Any = None
        self._id_of: dict[str, str] = {}  # room as configured -> room id
        self._room_of: dict[str, str] = {}  # room id -> room as configured
        self._joined: set[str] = set()  # room ids the bot is in
        self._rejoin_at: dict[str, tuple[float, int]] = {}  # room id -> (when, attempts)
        self._timeline = TimelineReader(ctx, self._error)
        self._online = asyncio.Event()
        self._changed = asyncio.Event()  # set after each sync: wait_ready looks again
        self._relogin = True
        self._task: asyncio.Task[None] | None = None
        self.media = Media(options.homeserver, options.request_timeout, lambda: self.ctx.files)
        # the largest file each way: the option, else what the homeserver says at login
        self._max_file = options.max_file_bytes or DEFAULT_MAX
        # a burst must not arrive as a "limited" timeline (Synapse's default is 10 events)
        self._filter = {"room": {"timeline": {"limit": options.sync_timeline_limit}},
                        "presence": {"types": []}}

    @property
    def limits(self) -> Limits:
        # an event may hold 64 KiB of JSON: body and HTML of 16,000 characters fit
        return Limits(max_text_length=16000, can_impersonate=False,
                      default_nick_format="{nick}", edits=True, deletes=True,
                      files=True, max_file_bytes=self._max_file)

    @classmethod
    def normalize_room(cls, room: str) -> str:
        room = room.strip()
        if not ROOM.fullmatch(room):
            raise ValueError(f"{room!r} is not a Matrix room: write its id "
                             '("!abc123:example.org") or an alias ("#project:example.org")')
        return room

    async def start(self) -> None:
        for noisy in ("nio", "peewee"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.client = make_client(self.opts, self.ctx)
        self._task = asyncio.create_task(self._run(), name=f"{self.ctx.name} sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()  # a pending /sync goes with it
            await asyncio.gather(self._task, return_exceptions=True)
        if self.client is not None:
            await self.client.close()
        await self.media.close()

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # the sync goes on. A removed room is no longer relayed nor joined again (the bot
        # stays in it: taking it back needs no invite); an added one is resolved and
        # joined now, or after the next sync if that fails
        for room in removed:
            room_id = self._id_of.pop(room, None)
            if room_id is not None and self._room_of.get(room_id) == room:
                del self._room_of[room_id]
                self._rejoin_at.pop(room_id, None)
        if added and self._online.is_set():
            try:
                await self._resolve_rooms()
                await self._rejoin()
            except Exception as exc:  # the sync loop tries again
                self.ctx.log.warning("%s: joining the new rooms: %s (%s); trying again "
                                     "after the next sync", self.ctx.name, exc,
                                     type(exc).__name__)
        self._changed.set()

    def is_connected(self) -> bool:
        return self._online.is_set()

    def is_ready(self, room: str) -> bool:
        room_id = self._id_of.get(room)
        # joined, and its state synced (nio encrypts for the members it knows)
        return (self._online.is_set() and room_id in self._joined
                and room_id in self.client.rooms)

    async def wait_ready(self, room: str) -> None:
        while not self.is_ready(room):
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)

    # -- inbound -----------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._relogin:
                    await log_in(self.client, self.opts, self.ctx.get_cursor,
                                 self.ctx.set_cursor)
                    self._relogin = False
                    self.ctx.log.info("%s: logged in as %s (device %s)", self.ctx.name,
                                      self.client.user_id, self.client.device_id)
                    if self.opts.max_file_bytes is None:
                        limit = await self.media.upload_limit(self.client.access_token)
                        self._max_file = limit or DEFAULT_MAX
                await self._resolve_rooms()
                await self._sync_loop()
                return  # shutting down
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._online.clear()
                failures += 1
                delay = backoff(failures, self.opts.reconnect_initial, self.opts.reconnect_max)
                if isinstance(exc, PermanentError):
                    delay = self.opts.reconnect_max
                self.ctx.log.warning("%s: %s (%s); retrying in %.1fs", self.ctx.name,
                                     exc, type(exc).__name__, delay)
                await asyncio.sleep(delay)

    async def _resolve_rooms(self) -> None:
        """Room ids of the configured rooms: an alias is resolved once, then kept."""
        for room in self.ctx.rooms:
            if room in self._id_of:
                continue
            room_id = room if room.startswith("!") else await self.ctx.get_cursor(f"alias:{room}")
            if room_id is None:
                answer = await self.client.room_resolve_alias(room)
                if not isinstance(answer, RoomResolveAliasResponse):
                    self.ctx.log.warning("%s: the alias %s cannot be resolved (%s)",
                                         self.ctx.name, room, answer)
                    continue
                room_id = answer.room_id
                await self.ctx.set_cursor(f"alias:{room}", room_id)
            self._id_of[room] = room_id
            self._room_of[room_id] = room

    async def _sync_loop(self) -> None:
        token = await self.ctx.get_cursor("sync")
        fresh = token is None  # a first start: take the token, relay nothing said before
        first = True
        joined = await self.client.joined_rooms()
        if not isinstance(joined, JoinedRoomsResponse):
            raise self._error(joined, "joined_rooms")
        self._joined = set(joined.rooms)
        while True:
            answer = await self.client.sync(
                timeout=0 if first else int(self.opts.sync_timeout * 1000),
                sync_filter=self._filter, since=token, full_state=True if first else None)
            if not isinstance(answer, SyncResponse):
                raise self._error(answer, "sync")
            await self._keys()
            self._joined |= set(answer.rooms.join)
            for room_id in set(answer.rooms.leave) & self._joined:
                self.ctx.log.warning("%s: the bot is no longer in %s; joining it again",
                                     self.ctx.name, self._room_of.get(room_id, room_id))
            self._joined -= set(answer.rooms.leave)
            self._online.set()
            await self._invites(answer)
            await self._rejoin()
            self._changed.set()
            if not fresh and not await self._hand_in(answer, token):
                return
            fresh = first = False
            await self._save_token(answer.next_batch)
            token = answer.next_batch
            await self._resolve_rooms()  # an alias that did not resolve yet

    async def _hand_in(self, answer: Any, since: str | None) -> bool:
        """Hand in every event of the batch; False when shutting down."""
        me = self.client.user_id
        # a room the bot was removed from: what was said up to that is in its leave entry
        rooms = [*answer.rooms.join.items(), *answer.rooms.leave.items()]
        for room_id, info in rooms:
            room = self._room_of.get(room_id)
            if room is None or room not in self.ctx.inbound_rooms:
                continue
            sources = await self._timeline.sources(self.client, room_id, room,
                                                   info.timeline, since)
            name_of = partial(self._timeline.name, self.client, room_id)
            for source in sources:
                for event in events(room, source, me, name_of):
                    if event.attachments and event.kind in (Kind.MESSAGE, Kind.ACTION):
                        kept = await self._keep_file(room, source)
                        if kept is None:
                            return False
                        event.attachments = [kept]
                    if not await self.ctx.hand_in(event):
                        return False
        return True

    async def _keep_file(self, room: str, source: dict[str, Any]) -> Attachment | None:
        """The event's file kept in every store, or its metadata with a note; None when
        roomlink is shutting down. A store that fails is retried (the sync token waits
        meanwhile): a ``kill -9`` at any moment leaves the message with its file, or
        nothing."""
        remote = remote_file(source.get("content") or {})
        assert remote is not None  # events() found it
        attempt = 0
        while True:
            try:
                return await self.media.keep(room, remote, self.client.access_token,
                                             self._max_file)
            except ShuttingDown:
                return None
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, 0.5, 30.0)
                self.ctx.log.error("%s: could not keep a received file (%s: %s); retrying "
                                   "in %.1fs", self.ctx.name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    async def _save_token(self, token: str) -> None:
        """Store the sync token; until it is stored the batch will be read again."""
        attempt = 0
        while True:
            try:
                await self.ctx.set_cursor("sync", token)
                return
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, 0.5, 30.0)
                self.ctx.log.error("%s: could not store the sync token (%s); retrying in "
                                   "%.1fs", self.ctx.name, exc, delay)
                await asyncio.sleep(delay)

    async def _keys(self) -> None:
        """The end-to-end key traffic a sync calls for (what nio's sync_forever does)."""
        client = self.client
        if client.olm is None:
            return
        try:
            await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except LocalProtocolError as exc:  # a query already in flight for a send
            self.ctx.log.debug("%s: key exchange: %s", self.ctx.name, exc)

    async def _invites(self, answer: Any) -> None:
        """Join the configured rooms the bot is invited to; decline every other invite."""
        for room_id in answer.rooms.invite:
            if room_id in self._room_of:
                self.ctx.log.info("%s: invited to %s: joining", self.ctx.name,
                                  self._room_of[room_id])
                await self._join(room_id)
            else:
                self.ctx.log.info("%s: declining an invite to %s (no room of the config)",
                                  self.ctx.name, room_id)
                await self.client.room_leave(room_id)

    async def _rejoin(self) -> None:
        """Join configured rooms the bot is not in, with backoff per room."""
        now = time.monotonic()
        for room_id in list(self._room_of):  # a reload may change it meanwhile
            if room_id in self._joined:
                self._rejoin_at.pop(room_id, None)
                continue
            when, attempts = self._rejoin_at.get(room_id, (0.0, 0))
            if now < when:
                continue
            if not await self._join(room_id):
                attempts += 1
                self._rejoin_at[room_id] = (now + backoff(attempts, REJOIN_INITIAL,
                                                          REJOIN_MAX), attempts)

    async def _join(self, room_id: str) -> bool:
        answer = await self.client.join(room_id)
        if isinstance(answer, ErrorResponse):
            self.ctx.log.warning("%s: cannot join %s (%s): invite the bot to it",
                                 self.ctx.name, self._room_of.get(room_id, room_id), answer)
            return False
        self._joined.add(room_id)
        return True

    # -- outbound ----------------------------------------------------------------------
    def _target(self, room: str) -> str:
        room_id = self._id_of.get(room)
        if room_id is None or not self._online.is_set() or room_id not in self._joined:
            raise RoomDown(f"{room}: not joined to the room (yet)")
        return room_id

    def _content(self, out: Outbound) -> dict[str, Any]:
        m = out.message
        last = out.part == out.parts - 1
        return compose(m.kind is Kind.ACTION, out.display_name, out.text,
                       [(a.url, a.name) for a in m.attachments if a.url] if last else None)

    async def send(self, out: Outbound) -> str:
        """The text as one ``m.text`` (the author's name in bold, as every relayed
        message), then one event per file, its ``body`` the file's name. Not the text as
        the first file's caption: only clients that know captions (spec v1.10) show one,
        the others would show "Alice: the text" as the file's name. The file events are
        kept as ``parts:ROOM:EVENT`` so that a delete redacts them too."""
        room_id = self._target(out.room)
        room = self.client.rooms.get(room_id)
        encrypt = bool(room is not None and room.encrypted)
        # every file is uploaded before anything is posted: one the homeserver refuses
        # (FileRefused) leaves nothing behind, and the core sends the text with links
        files = [await self.media.content(self.client, att, encrypt) for att in out.files]
        content = self._content(out)
        if out.reply_to_native:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": out.reply_to_native}}
        answer = await self._call(self.client.room_send(
            room_id, "m.room.message", content, tx_id=_txn("send", out.delivery_key),
            ignore_unverified_devices=True), "send", room_id)
        first = str(answer.event_id)
        posted: list[str] = []
        for index, file in enumerate(files):
            # a resend after a crash makes the same events: nothing shows twice
            answer = await self._call(self.client.room_send(
                room_id, "m.room.message", file,
                tx_id=_txn(f"file{index}", out.delivery_key),
                ignore_unverified_devices=True), "send a file", room_id)
            posted.append(str(answer.event_id))
        if posted:
            await self.ctx.set_cursor(f"parts:{out.room}:{first}", " ".join(posted))
        return first

    async def edit(self, out: Outbound) -> None:
        if not out.target_native:
            return
        room_id = self._target(out.room)
        content = edit_content(self._content(out), out.target_native)
        await self._call(self.client.room_send(
            room_id, "m.room.message", content, tx_id=_txn("edit", out.delivery_key),
            ignore_unverified_devices=True), "edit", room_id)

    async def delete(self, out: Outbound) -> None:
        if not out.target_native:
            return
        room_id = self._target(out.room)
        followers = await self.ctx.get_cursor(f"parts:{out.room}:{out.target_native}") or ""
        for index, event_id in enumerate([out.target_native, *followers.split()]):
            what = "redact" if index == 0 else f"redact{index}"
            await self._call(self.client.room_redact(
                room_id, event_id, tx_id=_txn(what, out.delivery_key)), "redact", room_id)

    async def _call(self, request: Awaitable[Any], what: str, room_id: str) -> Any:
        try:
            answer = await request
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._online.clear()  # the sync loop sets it again once the server answers
            raise RoomDown(f"{what}: the homeserver cannot be reached ({exc})") from exc
        except LocalProtocolError as exc:  # the room's state is not known yet
            raise RoomDown(f"{what}: {exc}") from exc
        except SendRetryError as exc:
            raise ConnectorError(f"{what}: {exc}") from exc
        if isinstance(answer, ErrorResponse):
            if answer.status_code == "M_FORBIDDEN" and not await self._still_in(room_id):
                raise RoomDown(f"{what}: the bot is no longer in the room ({answer})")
            raise self._error(answer, what)
        return answer

    async def _still_in(self, room_id: str) -> bool:
        """Whether the bot is in the room, as the homeserver says: a refusal because it
        was removed waits for the re-join without spending the retries."""
        answer = await self.client.room_get_state_event(room_id, "m.room.member",
                                                        self.client.user_id)
        joined = (isinstance(answer, RoomGetStateEventResponse)
                  and answer.content.get("membership") == "join")
        if not joined:
            self._joined.discard(room_id)
        return joined

    def _error(self, answer: Any, what: str) -> ConnectorError:
        code = getattr(answer, "status_code", None)
        if code == "M_LIMIT_EXCEEDED":
            wait = (getattr(answer, "retry_after_ms", None) or 5000) / 1000
            return RateLimited(f"{what}: 429 {answer}", retry_after=wait)
        if code == "M_UNKNOWN_TOKEN":
            self._relogin = True
            return ConnectorError(f"{what}: the homeserver forgot the token ({answer})")
        if code in ("M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON"):
            return PermanentError(f"{what}: {answer}")
        # M_FORBIDDEN while in the room: a power level (then the retries run out) or a
        # refusal that raced a re-join (then the next attempt goes through)
        return ConnectorError(f"{what}: {answer}")


def _txn(what: str, delivery_key: str) -> str:
    """A transaction id per delivery: the homeserver makes a resend the same event."""
    return "rl" + hashlib.sha256(f"{what}\x00{delivery_key}".encode()).hexdigest()[:40]
