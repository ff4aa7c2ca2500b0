"""``type: email``: one mailbox; rooms are recipient lists ("cto@acme.example, pm@acme.example").

Outbound, each chat message (or each batch of them, with ``batch_seconds``; batches.py
keeps those) is one mail from the bridge's address under the author's name, in one thread
per pipe and room: the Message-IDs sent to a room are kept as a connector cursor, so every
mail names the earlier ones in In-Reply-To/References across restarts. The Message-ID is
the native id.

Inbound, the IMAP session waits with IDLE (or polls), fetches every mail above the last
UID handled, and hands its new text to the core; the UID cursor (with UIDVALIDITY) moves
only after ``ctx.hand_in`` returned True, and the Message-ID makes a re-read mail the same
message, so a crash re-reads instead of losing and never relays twice. Every file of the
mail is kept (``ctx.files.keep``) before the hand-in, so a re-read keeps it again.

Files go both ways: in, every attachment and inline image; out, the kept files of a
message are attached to its mail up to ``max_attachment_bytes`` together (the core gives
the rest a ``[file: ...]`` line and link, ``Limits.max_total_file_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aioimaplib

from roomlink.connector import (
    Connector,
    Limits,
    PermanentError,
    backoff,
)
from roomlink.connector.files import FileRefused
from roomlink.message.filenames import clean_filename
from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Inbound, InboundAuthor, Kind, Outbound

from .batches import MailBatches
from .convert import (
    Incoming,
    Outgoing,
    build_mail,
    make_message_id,
    parse_room,
    read_mail,
    render_html,
    render_plain,
    room_tag,
    tag_of,
)
from .files import MailFile, chunks_of
from .imap import ImapError, ImapRefused, Mailbox
from .options import EmailOptions
from .smtp import SmtpSender

THREAD_KEEP = 20  # References: the thread's first mail and the latest ones
FIRST_RUN_DAYS = 1  # with no cursor yet, unread mail this recent is taken


class EmailConnector(Connector):
    platform = "email"
    Options = EmailOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, EmailOptions)
        self.opts = options
        self.log = ctx.log
        self.addresses = {room: parse_room(room) for room in ctx.rooms}
        self.by_tag = {room_tag(a): room for room, a in self.addresses.items()}
        self.threads: dict[tuple[str, str], list[str]] = {}  # (pipe, room) -> Message-IDs
        self.batches = MailBatches(options, ctx, self._mail)
        self.mailbox = Mailbox(options, ctx.log)
        self.smtp = SmtpSender(options, ctx.log)
        self.cursor_key = f"imap:{options.imap.folder}"
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._send_lock = asyncio.Lock()

    @classmethod
    def normalize_room(cls, room: str) -> str:
        return ", ".join(parse_room(room))

    @property
    def limits(self) -> Limits:
        # the author's name is the From display name, so no nick prefix in the text
        return Limits(can_impersonate=True, default_nick_format="{nick}",
                      edits=False, deletes=False, files=True,
                      max_file_bytes=self.opts.max_attachment_bytes,
                      max_total_file_bytes=self.opts.max_attachment_bytes)

    async def start(self) -> None:
        await self.batches.load(self.ctx.rooms)
        if self.ctx.inbound_rooms:
            self._task = asyncio.create_task(self._inbound(), name=f"{self.ctx.name} imap")
            # give the first connection a moment, so mail is read from the start; a
            # server that is down must not stop the daemon: the loop keeps trying
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), 10)

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # SMTP connects per mail; the IMAP session stays, unless no room is read any more.
        # A removed room keeps its recipients: a batch still open for it goes out.
        for room in added:
            if room not in self.addresses:
                self.addresses[room] = parse_room(room)
                self.by_tag[room_tag(self.addresses[room])] = room
                await self.batches.load([room])
        if self.ctx.inbound_rooms and self._task is None:
            self._task = asyncio.create_task(self._inbound(), name=f"{self.ctx.name} imap")
        elif not self.ctx.inbound_rooms and self._task is not None:
            # else the mail of people whose room went away would be judged and moved
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            self.connected.clear()

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._task, *self.batches.tasks()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.mailbox.close()
        await self.smtp.close()

    def is_ready(self, room: str) -> bool:
        return True  # SMTP is reached when a mail goes out; a failure is a retry there

    async def wait_ready(self, room: str) -> None:
        return None

    # -- outbound ----------------------------------------------------------------------
    def _from_name(self, out: Outbound) -> str:
        a = out.message.author
        return self.opts.display_name_format.format(nick=a.name, party=a.party,
                                                    platform=a.platform)

    def _canonical(self, out: Outbound) -> str:
        m = out.message
        text = out.text
        if m.kind is Kind.ACTION:
            text = f"_{escape(m.author.name)}_ {text}"
        elif m.kind in (Kind.JOIN, Kind.PART, Kind.TOPIC):
            text = f"_{escape(m.author.name)}: {text}_" if text else escape(m.author.name)
        if out.part == out.parts - 1:
            # a file known only by its platform's URL (kept files are attached, or the
            # core wrote their [file: ...] lines)
            text += "".join(f"\n{escape(a.name or 'file')}: <{a.url}>" for a in m.attachments
                            if a.url and not a.sha256 and not a.note)
        return text

    async def _thread(self, pipe: str, room: str) -> list[str]:
        key = (pipe, room)
        if key not in self.threads:
            saved = await self.ctx.get_cursor(f"thread:{pipe}:{room}")
            self.threads[key] = json.loads(saved) if saved else []
        return self.threads[key]

    async def _remember(self, pipe: str, room: str, message_id: str) -> None:
        ids = await self._thread(pipe, room)
        if message_id in ids:
            return
        ids.append(message_id)
        if len(ids) > THREAD_KEEP:
            del ids[1:len(ids) - THREAD_KEEP + 1]  # keep the root: clients thread on it
        await self.ctx.set_cursor(f"thread:{pipe}:{room}", json.dumps(ids))

    async def _read(self, files: Sequence[Attachment]
                    ) -> list[tuple[str | None, str | None, bytes]]:
        """(name, type, bytes) of kept files, from the party's store. The mail is built
        whole in memory for SMTP anyway; ``max_attachment_bytes`` bounds what they add."""
        if not files:
            return []
        if self.ctx.files is None:
            raise FileRefused("no files are kept here")
        out = []
        for att in files:
            chunks = [chunk async for chunk in self.ctx.files.open(att)]
            out.append((att.name, att.mime, b"".join(chunks)))  # one copy, not two
        return out

    async def _mail(self, pipe: str, room: str, message_id: str, from_name: str,
                    canonical: str, reply_to: str | None,
                    files: Sequence[Attachment] = ()) -> None:
        """Build and send one mail into the room's thread; remember it there."""
        thread = await self._thread(pipe, room)
        earlier = [i for i in thread if i != message_id]
        references = earlier + ([reply_to] if reply_to and reply_to not in earlier else [])
        mail = build_mail(Outgoing(
            from_name=from_name,
            address=self.opts.address,
            to=self.addresses[room],
            subject=self.opts.subject_format.format(pipe=pipe, party=self.ctx.party),
            message_id=message_id,
            in_reply_to=reply_to or (earlier[-1] if earlier else None),
            references=references,
            plain=render_plain(canonical),
            html=render_html(canonical),
            date=datetime.now(UTC),
            files=await self._read(files),
        ))
        await self.smtp.send(mail, list(self.addresses[room]))
        await self._remember(pipe, room, message_id)

    async def send(self, out: Outbound) -> str:
        room, pipe = out.room, out.message.pipe
        if room not in self.addresses:
            raise PermanentError(f"{room!r} is not a room of this connector")
        message_id = make_message_id(room_tag(self.addresses[room]), out.delivery_key,
                                     self.opts.domain)
        if self.opts.batch_seconds > 0:
            return await self.batches.add(out, message_id, self._from_name(out),
                                          self._canonical(out))
        await self._mail(pipe, room, message_id, self._from_name(out), self._canonical(out),
                         out.reply_to_native, out.files)
        return message_id

    # -- inbound -----------------------------------------------------------------------
    async def _keep(self, room: str, files: list[MailFile]) -> list[Attachment]:
        """Every file of a mail kept in every store, or, when it cannot be, its name,
        type and size with a note saying why: nothing is dropped silently."""
        kept = []
        for f in files:
            reason = f.problem
            if reason is None and f.data is not None and self.ctx.files is not None:
                try:
                    kept.append(await self.ctx.files.keep(
                        room, f.name, f.mime, chunks_of(f.data),
                        declared_size=f.declared_size,
                        max_bytes=self.opts.max_attachment_bytes))
                    continue
                except FileRefused as exc:
                    reason = f"not kept: {exc}"
            reason = reason or "not kept: no files are kept here"
            self.log.warning("%s: file %r (%s, %s bytes) of a mail to %s %s", self.ctx.name,
                             f.name, f.mime, f.size, room, reason)
            kept.append(Attachment(name=clean_filename(f.name), mime=f.mime, size=f.size,
                                   note=reason))
        return kept

    async def _inbound(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                await self.mailbox.connect()
                self.connected.set()
                attempt = 0
                self.log.info("%s: IMAP %s:%d folder %s (%s)", self.ctx.name,
                              self.opts.imap.host, self.opts.imap.effective_port,
                              self.opts.imap.folder,
                              "IDLE" if self.mailbox.can_idle else "polling")
                if not await self._catch_up_first():
                    return  # shutting down
                while not self._stopping:
                    if not await self._catch_up():
                        return
                    await self.mailbox.wait_for_mail()
            except (ImapError, OSError, TimeoutError, aioimaplib.AioImapException) as exc:
                self.log.warning("%s: IMAP %s:%d: %s", self.ctx.name, self.opts.imap.host,
                                 self.opts.imap.effective_port, exc or type(exc).__name__)
            except Exception:  # a bug must not leave the mailbox unread for good
                self.log.exception("%s: IMAP session failed unexpectedly", self.ctx.name)
            finally:
                await self.mailbox.close()
            if self._stopping:
                return
            attempt += 1
            delay = backoff(attempt, self.opts.reconnect_initial, self.opts.reconnect_max)
            self.log.info("%s: IMAP reconnecting in %.1fs", self.ctx.name, delay)
            await asyncio.sleep(delay)

    async def _last_uid(self) -> int | None:
        saved = await self.ctx.get_cursor(self.cursor_key)
        if saved:
            validity, _, uid = saved.partition(":")
            if int(validity) == self.mailbox.uidvalidity:
                return int(uid)
            self.log.warning("%s: UIDVALIDITY of %s changed; reading its unread mail again",
                             self.ctx.name, self.opts.imap.folder)
        return None

    async def _catch_up_first(self) -> bool:
        """Without a valid cursor, take the recent unread mail (re-reads are no doubles:
        the Message-ID gives each mail its id). False when roomlink is shutting down."""
        if await self._last_uid() is not None:
            return True
        since = (datetime.now(UTC) - timedelta(days=FIRST_RUN_DAYS)).date()
        uids = await self.mailbox.unseen_since(since)
        sizes = dict(await self.mailbox.sizes_after(uids[0] - 1)) if uids else {}
        for uid in uids:
            if not await self._handle(uid, sizes.get(uid, 0)):
                return False
        if not uids:  # start after what is there now
            existing = await self.mailbox.sizes_after(0)
            last = existing[-1][0] if existing else 0
            await self.ctx.set_cursor(self.cursor_key, f"{self.mailbox.uidvalidity}:{last}")
        return True

    async def _catch_up(self) -> bool:
        """Every mail above the cursor, in UID order; False when roomlink is shutting down."""
        last = await self._last_uid() or 0
        for uid, size in await self.mailbox.sizes_after(last):
            if not await self._handle(uid, size):
                return False
        return True

    async def _handle(self, uid: int, size: int) -> bool:
        """One mail: relay it or drop it; then, and only then, move the cursor past it.
        False when roomlink is shutting down: the cursor stays, the mail is read again."""
        inbound = None
        if size > self.opts.max_message_bytes:
            self.log.warning("%s: mail UID %d is %d bytes (max_message_bytes %d): skipped",
                             self.ctx.name, uid, size, self.opts.max_message_bytes)
        else:
            raw = await self.mailbox.fetch(uid)
            if raw is not None:
                inbound = await self._judge(uid, raw)
        if inbound is not None and not await self.ctx.hand_in(inbound):
            return False
        await self.ctx.set_cursor(self.cursor_key, f"{self.mailbox.uidvalidity}:{uid}")
        if inbound is not None:
            try:
                await self.mailbox.mark_seen(uid)
            except ImapRefused as exc:  # a read-only folder: the cursor is what counts
                self.log.warning("%s: could not mark mail UID %d read: %s", self.ctx.name,
                                 uid, exc)
        return True

    async def _judge(self, uid: int, raw: bytes) -> Inbound | None:
        try:
            mail = read_mail(raw, self.opts.reply_languages)
        except Exception as exc:  # broken MIME: this mail only
            self.log.warning("%s: mail UID %d cannot be read (%s: %s): skipped",
                             self.ctx.name, uid, type(exc).__name__, exc)
            return None
        if mail.sender == self.opts.address or tag_of(mail.message_id or "",
                                                      self.opts.domain):
            return None  # the bridge's own mail
        reason = mail.automatic
        room, reply_to = None, None
        if reason is None:
            room, reply_to, reason = self._route(mail)
        if room is None:
            self.log.info("%s: mail UID %d from %s not relayed: %s", self.ctx.name, uid,
                          mail.sender, reason)
            if self.opts.reject_folder:
                try:
                    await self.mailbox.move(uid, self.opts.reject_folder)
                except ImapRefused as exc:  # must not hold up the mail behind it
                    self.log.warning("%s: could not move mail UID %d to %r (%s); left "
                                     "where it is", self.ctx.name, uid,
                                     self.opts.reject_folder, exc)
            return None
        if not mail.text.strip() and not mail.files:
            self.log.info("%s: mail UID %d from %s has no new text: skipped", self.ctx.name,
                          uid, mail.sender)
            return None
        return Inbound(
            room=room,
            author=InboundAuthor(name=mail.sender_name, id=mail.sender),
            text=mail.text,
            native_id=mail.message_id or f"uid:{self.mailbox.uidvalidity}:{uid}",
            reply_to_native=reply_to,
            attachments=await self._keep(room, mail.files),
            ts=mail.date,
        )

    def _allowed(self, room: str, sender: str) -> bool:
        if sender in self.addresses[room]:
            return True
        domain = "@" + sender.rpartition("@")[2]
        return any(a == sender or a == domain for a in self.opts.allowed_senders)

    def _route(self, mail: Incoming) -> tuple[str | None, str | None, str]:
        """(room, reply_to native id, why not) for a mail from a person."""
        rooms = [r for r in self.ctx.rooms if r in self.ctx.inbound_rooms]
        reply_to = mail.in_reply_to[0] if mail.in_reply_to else None
        for ref in mail.in_reply_to:  # a reply to a mail the bridge sent: that mail's room
            room = self.by_tag.get(tag_of(ref, self.opts.domain) or "")
            if room is not None and room in rooms:
                if self._allowed(room, mail.sender):
                    return room, reply_to, ""
                return None, None, f"sender not allowed in room {room!r}"
        candidates = [r for r in rooms if mail.sender in self.addresses[r]]
        if not candidates:
            candidates = [r for r in rooms if self._allowed(r, mail.sender)]
        if not candidates:
            return None, None, "sender not allowed"
        # several rooms: the one whose recipients the mail was also sent to
        room = max(candidates, key=lambda r: len(mail.recipients & set(self.addresses[r])))
        return room, reply_to, ""

