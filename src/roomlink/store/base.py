"""The store's public value types and errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from roomlink.message.model import Message, RoomRef

# the states of an outbox row
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class StoreError(Exception):
    """A store could not be opened, or an operation on it failed."""


class UnknownOutboxRow(StoreError, LookupError):
    """An outbox row id that is not in this store."""


@dataclass(frozen=True, slots=True)
class RecordEntry:
    """A message to record, with this party's destination rooms for it (may be empty)."""

    message: Message
    outbox: tuple[RoomRef, ...] = ()
    # the message's canonical bytes (roomlink.store.chain.canonical), when the caller
    # already has them: every party's store records the same message, so the ingest
    # encodes it once for all of them; empty means the store encodes it
    canonical: bytes = b""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One pending delivery of one message into one of this party's rooms."""

    id: int
    message: Message
    connector: str
    room: str
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One copy as an operator sees it (``roomlink outbox list``, the status page)."""

    id: int  # the outbox row
    message_id: str  # the id the API returned and every store shares
    pipe: str
    connector: str
    room: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class RoomCount:
    """How many copies for one room of one pipe are in one state."""

    pipe: str
    connector: str
    room: str
    state: str
    count: int
