"""``type: telegram``: one bot; rooms are chat ids (``"-1001234567890"``) or ``"@channel"``.

Inbound, the connector long-polls ``getUpdates`` itself. The update offset is a cursor
in the party's store that moves past an update only once ``ctx.hand_in`` returned True for
everything in it, so a crash re-reads the update and the deterministic message id makes
the second reading a no-op; a message's files are downloaded into every store before
it is handed in (files.py), and an album's items are one message. Outbound, messages are
``sendMessage`` with ``parse_mode=HTML``: the author's name in bold, the text escaped,
long texts cut into balanced parts of at most 4,096 visible characters; files go one
message each (sendPhoto / sendDocument), the first captioned with the text when it fits.
Which delivered copy is made of several messages (``parts:ROOM:ID``) and which is a file
message whose caption an edit changes (``caption:ROOM:ID``) is kept as cursors in the
store, so that edits and deletes find them after a restart: not in the native id, which
must stay the bare message id for a reply made in Telegram to find the original.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from telegram import Message, Update
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
    FileRefused,
    Limits,
    PermanentError,
    ShuttingDown,
    backoff,
)
from roomlink.message.model import Attachment, Inbound, Kind, Outbound

from .bot import RawBot, delivery_error, make_bot, retry_seconds
from .files import MAX_UPLOAD, Fetcher
from .inbound import Remote, album_of, albums, events, message_of, remote_files, seen
from .options import TelegramOptions
from .outbound import NO_PREVIEW, edited_caption, edited_text, poster, steps

T = TypeVar("T")
PART_INTERVAL = 1.0  # between the parts of one long message: Telegram's ~1 per second
ALBUM_WAIT = 1.0  # seconds to wait for the rest of an album that ends a getUpdates answer


class TelegramConnector(Connector):
    platform = "telegram"
    Options = TelegramOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, TelegramOptions)
        self.opts = options
        self.bot: RawBot = make_bot(options)
        self.fetcher = Fetcher(self.bot, lambda: self.ctx.files, options.request_timeout)
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
                      # photos up to 10 MB, other files up to 50 MB (the Bot API's limits)
                      files=True, max_file_bytes=MAX_UPLOAD,
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
        await self.fetcher.close()
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
        held: tuple[tuple[int, str], int] | None = None  # an album waited for, and its size
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
            fresh = []
            for raw in updates:
                try:
                    update_id = int(raw["update_id"])
                except (TypeError, KeyError, ValueError):
                    self.ctx.log.warning("%s: skipping an update without update_id: %.300r",
                                         self.ctx.name, raw)
                    continue
                if offset is not None and update_id < offset:
                    continue  # already stored (the server repeats what it was not told)
                fresh.append(raw)
            groups = albums(fresh)
            for index, group in enumerate(groups):
                key = album_of(group[0])
                if key is not None and index == len(groups) - 1 and held != (key, len(group)):
                    # an album's items come as one update each: wait for the rest before
                    # handing it in (the next poll answers these again, and any new items)
                    held = (key, len(group))
                    await asyncio.sleep(ALBUM_WAIT)
                    break
                held = None
                if not await self._take(group):
                    return  # shutting down: the offset stays, the next run reads it again
                offset = int(group[-1]["update_id"]) + 1
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

    async def _take(self, group: list[dict[str, Any]]) -> bool:
        """Hand in the events of one update, or of the updates of one album (its items
        become one message with every file); True once the offset may move past them
        (stored, or skipped), False when roomlink is shutting down."""
        inbound: list[Inbound] = []
        files: list[Remote] = []
        for raw in group:
            try:
                update = Update.de_json(raw, self.bot)
                message, edited = message_of(update)
                if message is None:
                    kinds = [k for k in raw if k != "update_id"]
                    self.ctx.log.info("%s: skipping update %s of a kind not relayed (%s)",
                                      self.ctx.name, raw.get("update_id"), ", ".join(kinds))
                    continue
                mapped = await self._map(message, edited)
                for event in mapped:
                    if event.kind is Kind.EDIT:  # read again after a crash: the same record
                        event.native_id = f"update:{raw['update_id']}"
            except Exception as exc:  # a malformed update must not stop the bot or its offset
                self.ctx.log.warning("%s: skipping update %s that cannot be read (%s: %s)",
                                     self.ctx.name, raw.get("update_id"), type(exc).__name__,
                                     exc)
                continue
            for event in mapped:
                if (len(group) > 1 and inbound and event.kind is Kind.MESSAGE
                        and inbound[-1].kind is Kind.MESSAGE):  # the next item of an album
                    first = inbound[-1]
                    first.text = "\n".join(t for t in (first.text, event.text) if t.strip())
                else:
                    inbound.append(event)
            if mapped and mapped[-1].kind in (Kind.MESSAGE, Kind.ACTION) and not edited:
                files.extend(remote_files(message))
        if files and inbound and inbound[-1].kind in (Kind.MESSAGE, Kind.ACTION):
            kept = await self._keep_files(inbound[-1].room, files)
            if kept is None:
                return False
            inbound[-1].attachments = kept
        for event in inbound:
            if not await self.ctx.hand_in(event):
                return False
        return True

    async def _keep_files(self, room: str, files: list[Remote]) -> list[Attachment] | None:
        """Each file kept in every store, or its metadata with a note; None when roomlink
        is shutting down. A store that fails is retried (the offset waits meanwhile):
        a ``kill -9`` at any moment leaves the whole message with its files, or nothing."""
        attempt = 0
        while True:
            try:
                return [await self.fetcher.keep(room, remote) for remote in files]
            except ShuttingDown:
                return None
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, 0.5, 30.0)
                self.ctx.log.error("%s: could not keep a received file (%s: %s); retrying in "
                                   "%.1fs", self.ctx.name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

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
    async def send(self, out: Outbound) -> str:
        todo = steps(out)
        # ids posted so far ("f" before a file message's): a 429 in the middle resends
        # only what is still missing
        done = self._progress.setdefault(out.delivery_key, [])
        for index in range(len(done), len(todo)):
            if index:
                await asyncio.sleep(PART_INTERVAL)
            reply = out.reply_to_native if index == 0 else None
            text, file = todo[index]
            try:
                post = poster(self.bot, self.ctx.files, text, file, reply)
                sent = await self._call(out.room, post)
            except FileRefused:
                # the core sends the part again as text with a [file: ...] line: take back
                # what went already, so that nothing shows twice
                await self._take_back(out.room, done)
                del self._progress[out.delivery_key]
                raise
            except PermanentError:
                del self._progress[out.delivery_key]  # never sent again
                raise
            done.append(("f" if file is not None else "") + str(sent.message_id))
        del self._progress[out.delivery_key]
        first = done[0].removeprefix("f")
        if len(done) > 1:  # a delete must find every part, after a restart too
            await self.ctx.set_cursor(f"parts:{out.room}:{first}", " ".join(done[1:]))
        if done[0].startswith("f"):  # an edit changes its caption, after a restart too
            await self.ctx.set_cursor(f"caption:{out.room}:{first}", "1")
        return first

    async def _take_back(self, room: str, posted: list[str]) -> None:
        for native in posted:

            async def remove(chat: int | str, native: str = native) -> bool:
                return await self.bot.delete_message(chat, int(native.removeprefix("f")))

            try:
                await self._call(room, remove)
            except Exception as exc:  # best effort: the text follows anyway
                self.ctx.log.warning("%s: could not take back message %s in %s: %s",
                                     self.ctx.name, native, room, exc)

    async def edit(self, out: Outbound) -> None:
        target = out.target_native
        if target is None or not target.isdigit():
            return
        if await self.ctx.get_cursor(f"caption:{out.room}:{target}"):
            await self._edit_caption(out, target)
            return
        followers = await self.ctx.get_cursor(f"parts:{out.room}:{target}") or ""
        text = edited_text(out, any(not n.startswith("f") for n in followers.split()))

        async def change(chat: int | str) -> None:
            try:
                await self.bot.edit_message_text(text, chat, int(target),
                                                 parse_mode=ParseMode.HTML,
                                                 link_preview_options=NO_PREVIEW)
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():  # the same text again
                    raise

        await self._call(out.room, change)

    async def _edit_caption(self, out: Outbound, target: str) -> None:
        new = edited_caption(out)

        async def change(chat: int | str) -> None:
            try:
                await self.bot.edit_message_caption(chat, int(target), caption=new,
                                                    parse_mode=ParseMode.HTML)
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    raise

        await self._call(out.room, change)

    async def delete(self, out: Outbound) -> None:
        target = out.target_native
        if target is None or not target.isdigit():
            return
        followers = await self.ctx.get_cursor(f"parts:{out.room}:{target}") or ""
        for native in [target, *(n.removeprefix("f") for n in followers.split())]:

            async def remove(chat: int | str, native: str = native) -> None:
                try:
                    await self.bot.delete_message(chat, int(native))
                except BadRequest as exc:
                    if "not found" not in exc.message.lower():  # gone already
                        raise

            await self._call(out.room, remove)
