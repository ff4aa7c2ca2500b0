"""Who wrote which message of a room, under which ids: the author check's memory.

A room names a message by its stanza id; its sender names it by its own id (a
correction does). The ledger remembers both, and the author, for the messages the
bridge saw lately; for older ones, or after a restart, it looks in the room's archive
(newest first, a bounded number of pages). A message it cannot find is one whose author
it cannot tell: corrections and retractions of it are not relayed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .inbound import Said, read
from .session import ArchiveError, Session

MEMORY = 20_000  # messages remembered, across rooms
SEARCH_PAGES = 10  # archive pages (of 100) looked through for an unknown message
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Entry:
    author: str
    nick: str
    msg_id: str | None


class Ledger:
    def __init__(self, session: Session, log: logging.Logger, name: str) -> None:
        self.session = session
        self.log = log
        self.name = name
        self._by_room_id: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        # (room, author, the sender's id) -> the room's id of the original message; a
        # correction's own id maps to the original too, so a correction of it works
        self._by_sender_id: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        # rooms whose archive was looked through in vain once: everything since is in
        # memory, so a flood of corrections naming unknown ids costs one search, not many
        self._searched: set[str] = set()

    def remember(self, room: str, said: Said) -> None:
        if said.stanza_id is None:
            return
        if said.replaces is not None:
            original = self._by_sender_id.get((room, said.author, said.replaces))
            if original is not None and said.msg_id:
                _put(self._by_sender_id, (room, said.author, said.msg_id), original)
            return
        if said.retracts is not None:
            return
        _put(self._by_room_id, (room, said.stanza_id),
             Entry(said.author, said.nick, said.msg_id))
        if said.msg_id:
            _put(self._by_sender_id, (room, said.author, said.msg_id), said.stanza_id)

    def nick_of(self, room: str, stanza_id: str) -> str | None:
        entry = self._by_room_id.get((room, stanza_id))
        return entry.nick if entry else None

    async def wrote(self, room: str, author: str, stanza_id: str) -> bool:
        """Whether ``author`` wrote the message the room calls ``stanza_id``."""
        entry = self._by_room_id.get((room, stanza_id))
        if entry is None:
            found = await self._search(room, lambda s: s.stanza_id == stanza_id)
            entry = self._by_room_id.get((room, stanza_id)) if found else None
        return entry is not None and entry.author == author

    async def original(self, room: str, author: str, sender_id: str) -> str | None:
        """The room's id of the message ``author`` calls ``sender_id``; None when ``author``
        wrote no such message (or it is too old to find)."""
        key = (room, author, sender_id)
        if key not in self._by_sender_id:
            await self._search(room, lambda s: (s.author, s.msg_id) == (author, sender_id)
                               and s.replaces is None and s.retracts is None)
        return self._by_sender_id.get(key)

    async def sender_id_of(self, room: str, stanza_id: str) -> str | None:
        """The sender's own id of the message the room calls ``stanza_id``."""
        entry = self._by_room_id.get((room, stanza_id))
        if entry is None:
            await self._search(room, lambda s: s.stanza_id == stanza_id)
            entry = self._by_room_id.get((room, stanza_id))
        return entry.msg_id if entry else None

    async def _search(self, room: str, match: Callable[[Said], bool]) -> bool:
        if room in self._searched:
            return False
        before: str | None = None
        try:
            for _ in range(SEARCH_PAGES):
                page = await self.session.archive_page(room, last=before is None,
                                                       before=before, size=100)
                found = False
                for archive_id, stamp, msg in reversed(page.items):
                    said = read(msg, room, archive_id, stamp)
                    self.remember(room, said)
                    found = found or match(said)
                if found:
                    return True
                if page.complete or not page.first or not page.items:
                    break
                before = page.first
            self._searched.add(room)
        except ArchiveError as exc:
            self.log.info("%s: cannot search the archive of %s (%s)", self.name, room, exc)
        return False


def _put(memory: OrderedDict[K, V], key: K, value: V) -> None:
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > MEMORY:
        memory.popitem(last=False)
