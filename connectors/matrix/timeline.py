"""One room's part of a sync answer: which events get handed in, and under which names.

The connector's sync loop owns the token, the rooms and the handing in; this owns what
one room's timeline in a batch amounts to. A "limited" timeline (more happened since the
last sync than one answer holds: a long downtime) is completed by paging back to the
previous token; what a batch shows before the bot's own join is history, not news, and
is cut off; senders are named by their display name in the room, asked of the room state
for those who left before their words were mapped. Kept apart from the connector so
that its sync loop reads as the cursor logic it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nio import (
    MegolmEvent,
    MessageDirection,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
)

from roomlink.connector import ConnectorContext, ConnectorError

GAP_PAGE, GAP_MAX = 500, 20000  # events per page, and at most, when filling a gap


class TimelineReader:
    """Reads the room timelines of one connector's syncs; remembers the names of senders
    who are no longer members."""

    def __init__(self, ctx: ConnectorContext,
                 error: Callable[[Any, str], ConnectorError]) -> None:
        self.ctx = ctx
        # the connector's own mapping: an expired token there makes it log in again
        self._error = error
        self._names: dict[tuple[str, str], str] = {}  # (room id, user) of members gone

    async def sources(self, client: Any, room_id: str, room: str, timeline: Any,
                      since: str | None) -> list[dict[str, Any]]:
        """The JSON of the events of ``room``'s timeline in a batch that are news."""
        events = list(timeline.events)
        if timeline.limited and since is not None:
            events = await self._gap(client, room_id, room, timeline.prev_batch,
                                     since) + events
        sources = self._after_own_join(client.user_id, room, events)
        await self._learn_names(client, room_id, sources)
        return sources

    def name(self, client: Any, room_id: str, user: str) -> str:
        """The sender's display name in the room, exactly (the user id if it has none)."""
        room = client.rooms.get(room_id)
        member = room.users.get(user) if room is not None else None
        if member is not None and member.display_name:
            return str(member.display_name)
        return self._names.get((room_id, user), user)

    async def _gap(self, client: Any, room_id: str, room: str, prev_batch: str,
                   since: str) -> list[Any]:
        """What a "limited" timeline left out: paged back from the batch's start to
        ``since``."""
        older: list[Any] = []
        start = prev_batch
        while len(older) < GAP_MAX:
            page = await client.room_messages(room_id, start=start, end=since,
                                              direction=MessageDirection.back,
                                              limit=GAP_PAGE)
            if not isinstance(page, RoomMessagesResponse):
                raise self._error(page, "messages")
            older.extend(page.chunk)
            if not page.chunk or not page.end or page.end == start:
                break
            start = page.end
        else:
            self.ctx.log.warning("%s: more than %d events missed in %s; relaying the last "
                                 "of them", self.ctx.name, GAP_MAX, room)
        if older:
            self.ctx.log.info("%s: %d events fetched that the sync left out of %s",
                              self.ctx.name, len(older), room)
        older.reverse()
        return older

    def _after_own_join(self, me: str, room: str, timeline: list[Any]
                        ) -> list[dict[str, Any]]:
        """The events' JSON; only what followed our own join when the batch has it (the
        history a join shows is what was said before)."""
        sources: list[dict[str, Any]] = []
        for event in timeline:
            if isinstance(event, MegolmEvent):
                self.ctx.log.warning("%s: cannot decrypt %s in %s (no key for session %s)",
                                     self.ctx.name, event.event_id, room, event.session_id)
                continue
            source = getattr(event, "source", None)
            if not isinstance(source, dict):
                continue
            content = source.get("content") or {}
            prev = (source.get("unsigned") or {}).get("prev_content") or {}
            if (source.get("type") == "m.room.member" and source.get("state_key") == me
                    and content.get("membership") == "join"
                    and prev.get("membership") != "join"):
                sources.clear()
                continue
            sources.append(source)
        return sources

    async def _learn_names(self, client: Any, room_id: str,
                           sources: list[dict[str, Any]]) -> None:
        """Names of senders who left before we mapped their words: from the room state."""
        room = client.rooms.get(room_id)
        for user in {s.get("sender") for s in sources}:
            if not isinstance(user, str) or (room_id, user) in self._names:
                continue
            if room is not None and user in room.users:
                continue
            answer = await client.room_get_state_event(room_id, "m.room.member", user)
            if isinstance(answer, RoomGetStateEventResponse):
                name = answer.content.get("displayname")
                if isinstance(name, str) and name:
                    self._names[(room_id, user)] = name
