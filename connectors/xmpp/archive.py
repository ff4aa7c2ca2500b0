"""Reading a room's archive (XEP-0313) after a join: what was said while the bridge
was away, after the cursor ``archive:ROOM`` (the room's id of the last message handled
and its time), handed to the connector's ``take`` one message at a time in order.

A cursor the archive no longer holds is looked up by its time instead; with no time
either, the room is relayed from now on. At most ``catch_up_limit`` messages are read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from slixmpp import Message

from .options import XmppOptions
from .session import ArchiveError, Session

PAGE = 100  # archive messages per query
Take = Callable[[str, Message, str | None, datetime | None], Awaitable[bool]]


class CatchUp:
    def __init__(self, session: Session, opts: XmppOptions, ctx: Any, take: Take) -> None:
        self.session = session
        self.opts = opts
        self.ctx = ctx
        self.take = take

    async def catch_up(self, room: str) -> bool:
        """Relay what the room's archive holds after the cursor; True unless shutting down."""
        key = f"archive:{room}"
        saved = await self.ctx.get_cursor(key)
        try:
            if saved is None:  # first join: only what is said from now on is relayed
                await self.bookmark(room, key)
                return True
            after, _, when = saved.partition(" ")
            start = parse(when) if after == "-" else None
            done = 0
            while done < self.opts.catch_up_limit:
                try:
                    page = await self.session.archive_page(
                        room, after=None if after == "-" else after, start=start, size=PAGE)
                except ArchiveError as exc:
                    if exc.condition != "item-not-found" or after == "-":
                        raise
                    start = parse(when)
                    if start is None:  # no time to go by either: from now on, then
                        self.ctx.log.warning("%s: the archive of %s no longer holds the last "
                                             "message relayed; relaying from now on",
                                             self.ctx.name, room)
                        await self.bookmark(room, key)
                        return True
                    self.ctx.log.warning("%s: the archive of %s no longer holds the last "
                                         "message relayed; reading it from %s on",
                                         self.ctx.name, room, when)
                    after = "-"
                    continue
                for archive_id, stamp, msg in page.items:
                    if not await self.take(room, msg, archive_id, stamp):
                        return False
                    done += 1
                if page.complete or not page.last or not page.items:
                    break
                after, start = page.last, None
            else:
                if done:
                    self.ctx.log.warning("%s: more than %d messages of %s waited in its archive; "
                                         "the rest are not relayed (catch_up_limit)",
                                         self.ctx.name, self.opts.catch_up_limit, room)
            if done:
                self.ctx.log.info("%s: %d message(s) of %s read from its archive",
                                  self.ctx.name, done, room)
        except ArchiveError as exc:
            self.ctx.log.warning("%s: cannot read the archive of %s (%s): what was said there "
                                 "while roomlink was away is not relayed", self.ctx.name,
                                 room, exc)
        return True

    async def bookmark(self, room: str, key: str) -> None:
        """Set the cursor to the newest message of the room's archive (or to now)."""
        page = await self.session.archive_page(room, last=True, size=1)
        mark = (f"{page.items[-1][0]} {iso(page.items[-1][1])}" if page.items
                else f"- {iso(None)}")
        await self.ctx.set_cursor(key, mark)


def iso(stamp: datetime | None) -> str:
    return (stamp or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
