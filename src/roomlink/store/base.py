"""The store's public value types and errors."""

from __future__ import annotations

from dataclasses import dataclass

from roomlink.model import Message, RoomRef

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


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One pending delivery of one message into one of this party's rooms."""

    id: int
    message: Message
    connector: str
    room: str
    attempts: int
