"""What a room received, read back from its party's store, as the connector got it.

A connector whose clients come and go (the API's WebSocket streams) offers them to catch
up: ``ConnectorContext.history_after(room, message_id, limit)`` answers the messages
delivered into the room after that message, in the room's order, each as the
:class:`Outbound` parts the connector was (or would have been) given to send. The
connector never sees the store itself.
"""

from __future__ import annotations

from collections.abc import Callable

from roomlink.connector.base import Limits
from roomlink.message.markup import escape
from roomlink.message.model import Kind, Message, Outbound
from roomlink.message.textsplit import split_text
from roomlink.relay.topology import Pipe, Topology
from roomlink.store import Store


def display_name(message: Message, pipe: Pipe | None, limits: Limits) -> str:
    """The author as the pipe's ``nick_format`` (or the platform's default) shows them."""
    nick_format = (pipe.nick_format if pipe else None) or limits.default_nick_format
    return nick_format.format(
        nick=message.author.name,
        party=message.author.party,
        platform=message.author.platform,
        connector=message.origin_connector,
    )


def parts_of(message: Message, room: str, connector: str, display: str,
             limits: Limits) -> list[Outbound]:
    """The parts delivery sends for ``message`` (native ids of replies and targets are not
    resolved: a replaying client names messages by their ids)."""
    kind, text = message.kind, message.text
    if kind is Kind.EDIT and not limits.edits:
        text += escape(" (edited)")
    parts = split_text(text, limits.max_text_length) if kind is not Kind.DELETE else [""]
    return [
        Outbound(room=room, message=message, text=part, display_name=display,
                 delivery_key=f"{message.id}:{connector}:{room}:{index}",
                 part=index, parts=len(parts))
        for index, part in enumerate(parts)
    ]  # fmt: skip


async def history_after(
    store: Store,
    topology: Callable[[], Topology],
    limits: Callable[[], Limits],
    connector: str,
    room: str,
    message_id: str,
    limit: int,
) -> list[Outbound] | None:
    """Up to ``limit`` messages delivered into the room after ``message_id``, as parts;
    None when the party's store holds no message ``message_id``."""
    found = await store.delivered_after(connector, room, message_id, limit)
    if found is None:
        return None
    out: list[Outbound] = []
    for message in found:
        try:
            pipe: Pipe | None = topology().pipe(message.pipe)
        except KeyError:
            pipe = None
        display = display_name(message, pipe, limits())
        out.extend(parts_of(message, room, connector, display, limits()))
    return out
