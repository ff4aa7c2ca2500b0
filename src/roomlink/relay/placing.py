"""Messages of a conversation hosted on one roomlink instance and spoken on several
(federation, README "Federation"): what the core checks before it records a whole
message another instance sent, and what it gives the link of the side that does not host.

A link connector's side that connects (``Limits.upstream``) holds what its own rooms say
in such a pipe (``Store.hold``) and records only what the host sends back placed, so that
every instance records one order: the host's. Everything a peer sends is hostile input:
:func:`checked` refuses, as :class:`BadInput`, a message that claims this instance's
party or rooms (unless it is this instance's own message coming back placed), that
reuses another message's id, or that answers or changes what it may not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet

from roomlink.errors import BadInput
from roomlink.message.model import Kind, Message, RoomRef
from roomlink.relay.topology import Pipe, Topology
from roomlink.store import Store

MAX_TEXT_BYTES = 256 * 1024  # as the router's: the most text one message may carry


def upstream_room(pipe: Pipe, upstream: AbstractSet[str]) -> RoomRef | None:
    """The room of the pipe's room that leads to its host, or None if hosted here."""
    for room in pipe.rooms:
        if room.ref.connector in upstream:
            return room.ref
    return None


async def checked(
    message: Message, pipe: Pipe, store: Store, topology: Topology,
    own_parties: Collection[str], connectors: Mapping[str, str],
) -> tuple[Message | None, bool]:
    """(the message as this instance records it, or None when it is on record already;
    whether it is this instance's own message coming back placed). Raises BadInput."""
    message = message.model_copy(update={"pipe": pipe.name})
    if len(message.text.encode()) > MAX_TEXT_BYTES:
        raise BadInput(f"text longer than {MAX_TEXT_BYTES} bytes")
    existing = await store.get_message(message.id)
    if existing is not None:
        if existing.author.party != message.author.party or existing.pipe != pipe.name:
            raise BadInput(f"message id {message.id} names another message")
        return None, False
    own_party = message.author.party in own_parties
    own_room = message.origin in topology.party_of or message.origin_connector in connectors
    own = own_party or own_room
    if own and await store.held_message(message.id) is None:
        if own_party:
            raise BadInput(f"message {message.id} claims party {message.author.party}, a "
                           "party of this instance")
        # the origin is part of the record on both sides: linked instances must name
        # their connectors apart, or one side's room would miss the other's messages
        raise BadInput(f"message {message.id} claims to come from {message.origin}, a "
                       "connector of this instance (linked instances need distinct "
                       "connector names)")
    for ref in (message.reply_to, message.target):
        if ref is None:
            continue
        other = await store.get_message(ref)
        if other is None or other.pipe != pipe.name:
            raise BadInput(f"message {message.id} refers to {ref}, not in this conversation")
        if ref == message.target and other.author.party != message.author.party:
            raise BadInput(f"message {message.id} changes a message of party "
                           f"{other.author.party}")
    if message.kind in (Kind.EDIT, Kind.DELETE) and message.target is None:
        raise BadInput(f"{message.kind} of no message")
    return message, own


async def held_after(store: Store, connector: str, after: int, limit: int
                     ) -> list[tuple[int, str, Message]]:
    """What is held for ``connector`` after ``after``, but what is on record already (a
    ``kill -9`` came between recording a message placed and releasing it): that is
    released now, so that the host is not asked to place it again."""
    rows = await store.held(connector, after, limit)
    placed = [m.id for _, _, m in rows if await store.get_message(m.id) is not None]
    if placed:
        await store.release(placed)
    return [row for row in rows if row[2].id not in placed]
