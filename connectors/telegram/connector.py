"""``type: telegram``: one bot; rooms are chat ids (``"-1001234567890"``) or ``"@channel"``.

Inbound, the connector long-polls ``getUpdates`` itself. The update offset is a cursor
in the party's store that moves past an update only once ``ctx.hand_in`` returned True for
everything in it, so a crash re-reads the update and the deterministic message id makes
the second reading a no-op. Outbound, messages are ``sendMessage`` with
``parse_mode=HTML``: the author's name in bold, the text escaped, long texts cut into
balanced parts of at most 4,096 visible characters.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from telegram import LinkPreviewOptions, Message, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from roomlink.connector import (
    Connector,
    ConnectorOptions,
    Limits,
    PermanentError,
    backoff,
)
from roomlink.message.model import Inbound, Kind, Outbound

from .bot import RawBot, delivery_error, make_bot, retry_seconds
from .convert import MAX_VISIBLE, compose, split_html
from .inbound import events, seen
from .options import TelegramOptions

T = TypeVar("T")
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
PART_INTERVAL = 1.0  # between the parts of one long message: Telegram's ~1 per second
EDIT_NOTE_ROOM = 100  # visible characters kept free for the note on an edited split message


class TelegramConnector(Connector):
    platform = "telegram"
    Options = TelegramOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, TelegramOptions)
        self.opts = options
        self.bot: RawBot = make_bot(options)
        self.me: int | None = None
        self._index_rooms()
        self._moved: dict[str, int] = {}  # room -> supergroup id it was upgraded to
        self._reachable = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        # ids of the parts of a long message already posted, by delivery key: a 429 in
        # the middle resends only the parts still missing
        self._progress: dict[str, list[str]] = {}

    @property
    def limits(self) -> Limits:
        # the connector splits itself: only it knows the visible length of its HTML
        return Limits(max_text_length=None, can_impersonate=False,
                      default_nick_format="{nick}", edits=True, deletes=True,
                      # about 1 message a second in one chat, 20 a minute in a group
                      room_rates=((1.0, 3), (20 / 60, 20)))

    @classmethod
    def normalize_room(cls, room: str) -> str:
        room = room.strip()
        if re.fullmatch(r"-?\d{1,20}", room):
            return str(int(room))
        if re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{3,31}", room):
            return room.lower()  # usernames are case-insensitive
        raise ValueError(f"{room!r} is not a Telegram chat: write its chat id as a string "
                         '("-1001234567890") or "@channelusername"')

    def _index_rooms(self) -> None:
        """Which chat is which room, and which rooms' messages are relayed."""
        rooms = self.ctx.rooms
        self._by_id = {r: r for r in rooms if not r.startswith("@")}
        self._by_name = {r.lower(): r for r in rooms if r.startswith("@")}
        self._relayed = set(self.ctx.inbound_rooms)

    async def _load_moves(self, rooms: Sequence[str]) -> None:
        """The supergroups that these rooms' groups were upgraded to, as recorded."""
        for room in rooms:
            moved = await self.ctx.get_cursor(f"migrated:{room}")
            if moved and moved.lstrip("-").isdigit():
                self._moved[room] = int(moved)
                self._warn_moved(room, int(moved))

    async def start(self) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per long poll
        await self._load_moves(self.ctx.rooms)
        self._poller = asyncio.create_task(self._poll(), name=f"{self.ctx.name} getUpdates")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()  # a pending getUpdates goes with it
            await asyncio.gather(self._poller, return_exceptions=True)
        try:
            await self.bot.shutdown()
        except Exception as exc:  # closing a session that never opened
            self.ctx.log.debug("%s: closing the Bot API session: %s", self.ctx.name, exc)

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # the bot polls every chat it is in anyway: only which chats are rooms changes
        for room in removed:
            self._moved.pop(room, None)
        self._index_rooms()
        await self._load_moves(added)

    def is_ready(self, room: str) -> bool:
        return self._reachable.is_set()

    async def wait_ready(self, room: str) -> None:
        await self._reachable.wait()

    # -- inbound -----------------------------------------------------------------------
    async def _poll(self) -> None:
        saved = await self.ctx.get_cursor("offset")
        offset = int(saved) if saved and saved.lstrip("-").isdigit() else None
        failures = 0
        while True:
            try:
                if self.me is None:
                    await self.bot.initialize()  # getMe: who we are, so we skip our own
                    self.me = self.bot.id
                    self.ctx.log.info("%s: polling as @%s", self.ctx.name, self.bot.username)
                updates = await self.bot.raw_updates(offset, self.opts.poll_timeout)
            except TimedOut:
                continue  # a long poll that outlived the read timeout: poll again
            except RetryAfter as exc:
                await asyncio.sleep(retry_seconds(exc))
                continue
            except TelegramError as exc:
                failures += 1
                delay = backoff(failures, self.opts.reconnect_initial, self.opts.reconnect_max)
                self._log_poll_error(exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:  # never let a surprise end the polling for good
                failures += 1
                delay = backoff(failures, self.opts.reconnect_initial, self.opts.reconnect_max)
                self.ctx.log.exception("%s: getUpdates failed unexpectedly; retrying in "
                                       "%.1fs", self.ctx.name, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._reachable.set()
            for raw in updates:
                try:
                    update_id = int(raw["update_id"])
                except (TypeError, KeyError, ValueError):
                    self.ctx.log.warning("%s: skipping an update without update_id: %.300r",
                                         self.ctx.name, raw)
                    continue
                if offset is not None and update_id < offset:
                    continue  # already stored (the server repeats what it was not told)
                if not await self._take(raw):
                    return  # shutting down: the offset stays, the next run reads it again
                offset = update_id + 1
                await self._save_offset(offset)

    async def _save_offset(self, offset: int) -> None:
        """Store the offset; until it is stored the update is not confirmed to Telegram."""
        attempt = 0
        while True:
            try:
                await self.ctx.set_cursor("offset", str(offset))
                return
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, 0.5, 30.0)
                self.ctx.log.error("%s: could not store the update offset (%s); retrying in "
                                   "%.1fs", self.ctx.name, exc, delay)
                await asyncio.sleep(delay)

    def _log_poll_error(self, exc: TelegramError, delay: float) -> None:
        name = self.ctx.name
        if isinstance(exc, Conflict):
            self.ctx.log.error(
                "%s: getUpdates refused with 409 Conflict (%s): a webhook is set for this "
                "bot (remove it with deleteWebhook) or another process polls the same bot "
                "token; retrying in %.0fs", name, exc.message, delay)
        elif isinstance(exc, InvalidToken):
            self.ctx.log.error("%s: the Bot API at %s rejects the token (%s): check the "
                               "connector's token and api_url; retrying in %.0fs",
                               name, self.opts.api_url, exc.message, delay)
        else:
            if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
                self._reachable.clear()  # sends wait instead of spending their attempts
            self.ctx.log.warning("%s: getUpdates failed (%s: %s); retrying in %.1fs",
                                 name, type(exc).__name__, exc.message, delay)

    async def _take(self, raw: dict[str, Any]) -> bool:
        """Hand one update's events in; True once the offset may move past the update
        (its events stored, or skipped), False when roomlink is shutting down."""
        try:
            update = Update.de_json(raw, self.bot)
            message, edited = _message_of(update)
            if message is None:
                kinds = [k for k in raw if k != "update_id"]
                self.ctx.log.info("%s: skipping update %s of a kind not relayed (%s)",
                                  self.ctx.name, raw.get("update_id"), ", ".join(kinds))
                return True
            inbound = await self._map(message, edited)
            for event in inbound:
                if event.kind is Kind.EDIT:  # read again after a crash: the same record
                    event.native_id = f"update:{raw['update_id']}"
        except Exception as exc:  # a malformed update must not stop the bot or its offset
            self.ctx.log.warning("%s: skipping update %s that cannot be read (%s: %s)",
                                 self.ctx.name, raw.get("update_id"), type(exc).__name__, exc)
            return True
        for event in inbound:
            if not await self.ctx.hand_in(event):
                return False
        return True

    async def _map(self, message: Message, edited: bool) -> list[Inbound]:
        s = seen(message)
        room = self._room_of(s.chat_id, s.chat_username)
        if s.migrate_to is not None and room is not None:
            await self._follow(room, s.migrate_to)
            return []
        if s.migrate_from is not None and room is None:
            old = self._room_of(s.migrate_from, None)
            if old is not None:
                await self._follow(old, s.chat_id)
            return []
        if room is None or room not in self._relayed or self.me is None:
            return []  # a chat that is no room of ours (or an out-only one)
        return events(room, message, edited, self.me, self.opts.relay_bots)

    def _room_of(self, chat_id: int, username: str | None) -> str | None:
        room = self._by_id.get(str(chat_id))
        if room is None and username:
            room = self._by_name.get(f"@{username}".lower())
        if room is None:
            room = next((r for r, new in self._moved.items() if new == chat_id), None)
        return room

    # -- supergroup migration ----------------------------------------------------------
    async def _follow(self, room: str, new_id: int) -> None:
        if self._moved.get(room) == new_id:
            return
        self._moved[room] = new_id
        await self.ctx.set_cursor(f"migrated:{room}", str(new_id))
        self._warn_moved(room, new_id)

    def _warn_moved(self, room: str, new_id: int) -> None:
        self.ctx.log.warning(
            "%s: the group %s was upgraded to the supergroup %s; roomlink delivers there "
            "now, but please change room %s to %r in the config", self.ctx.name, room,
            new_id, room, str(new_id))

    def _chat(self, room: str) -> int | str:
        if room in self._moved:
            return self._moved[room]
        return int(room) if room.lstrip("-").isdigit() else room

    async def _call(self, room: str, call: Callable[[int | str], Awaitable[T]]) -> T:
        """One Bot API call for ``room``, following a supergroup migration."""
        for _ in range(3):
            try:
                return await call(self._chat(room))
            except ChatMigrated as exc:
                await self._follow(room, int(exc.new_chat_id))
            except TelegramError as exc:
                raise delivery_error(exc, room, self._reachable.is_set()) from exc
        raise PermanentError(f"{room} keeps answering with another supergroup id")

    # -- outbound ----------------------------------------------------------------------
    def _html(self, out: Outbound) -> str:
        m = out.message
        kind = Kind.MESSAGE if m.kind is Kind.EDIT else m.kind
        return compose(kind.value, out.display_name, m.author.name, out.text,
                       [(a.url, a.name) for a in m.attachments if a.url])

    async def send(self, out: Outbound) -> str:
        parts = split_html(self._html(out))
        done = self._progress.setdefault(out.delivery_key, [])
        for index in range(len(done), len(parts)):
            if index:
                await asyncio.sleep(PART_INTERVAL)
            reply = out.reply_to_native if index == 0 else None
            text = parts[index]

            async def post(chat: int | str, text: str = text, reply: str | None = reply
                           ) -> Message:
                return await self.bot.send_message(
                    chat, text, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
                    reply_parameters=ReplyParameters(int(reply), allow_sending_without_reply=True)
                    if reply and reply.isdigit() else None)

            try:
                sent = await self._call(out.room, post)
            except PermanentError:
                del self._progress[out.delivery_key]  # never sent again
                raise
            done.append(str(sent.message_id))
        del self._progress[out.delivery_key]
        if len(done) > 1:  # a delete must find every part, after a restart too
            await self.ctx.set_cursor(f"parts:{out.room}:{done[0]}", " ".join(done[1:]))
        return done[0]

    async def edit(self, out: Outbound) -> None:
        target = out.target_native
        if target is None or not target.isdigit():
            return
        markup = self._html(out)
        parts = split_html(markup)
        followers = await self.ctx.get_cursor(f"parts:{out.room}:{target}")
        text = parts[0]
        if len(parts) > 1 or followers:
            # only the first part is edited: say so, in room kept free for it
            text = split_html(markup, MAX_VISIBLE - EDIT_NOTE_ROOM)[0]
            text += ("\n<i>(edited; the new text is longer than one message and ends here)</i>"
                     if len(parts) > 1 else
                     "\n<i>(edited; this replaces the whole text, the parts after this "
                     "message are outdated)</i>")

        async def change(chat: int | str) -> None:
            try:
                await self.bot.edit_message_text(text, chat, int(target),
                                                 parse_mode=ParseMode.HTML,
                                                 link_preview_options=NO_PREVIEW)
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():  # the same text again
                    raise

        await self._call(out.room, change)

    async def delete(self, out: Outbound) -> None:
        target = out.target_native
        if target is None or not target.isdigit():
            return
        followers = await self.ctx.get_cursor(f"parts:{out.room}:{target}") or ""
        for native in [target, *followers.split()]:

            async def remove(chat: int | str, native: str = native) -> None:
                try:
                    await self.bot.delete_message(chat, int(native))
                except BadRequest as exc:
                    if "not found" not in exc.message.lower():  # gone already
                        raise

            await self._call(out.room, remove)


def _message_of(update: Update) -> tuple[Message | None, bool]:
    if update.message or update.channel_post:
        return update.message or update.channel_post, False
    if update.edited_message or update.edited_channel_post:
        return update.edited_message or update.edited_channel_post, True
    return None, False  # another kind of update: not ours to relay
