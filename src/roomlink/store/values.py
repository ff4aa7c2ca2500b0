"""The values that cross the store contract (``contract.Store``), for every engine alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from roomlink.message.model import Attachment, Author, Kind, Message, RoomRef

# the states of an outbox row
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append, with this party's destination rooms for it (may be empty)."""

    message: Message
    outbox: tuple[RoomRef, ...] = ()
    # the message's canonical bytes (roomlink.store.chain.canonical), when the caller
    # already has them: every party's store appends the same message, so the ingest
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


# -- the party's record (roomlink.record reads these) -------------------------------------


class RecordRow(NamedTuple):
    """One stored message as the record walks it: its columns as stored (``kind`` and
    ``attachments`` as text, so that a tampered row is hashed as it is, never refused),
    its place in the store (``seq``) and in its pipe's chain."""

    seq: int
    id: str
    pipe: str
    kind: str
    origin_connector: str
    origin_room: str
    origin_native_id: str | None
    author_name: str
    author_id: str | None
    author_party: str
    author_platform: str
    text: str
    attachments: str  # the stored JSON text
    reply_to: str | None
    target: str | None
    ts: datetime  # timezone-aware, UTC
    chain: str | None
    chain_n: int | None

    def message(self) -> Message:
        """The message this row holds (ValueError if a tampered row holds no message)."""
        raw = self.attachments
        return Message.model_construct(
            id=self.id, pipe=self.pipe, kind=Kind(self.kind),
            origin_connector=self.origin_connector, origin_room=self.origin_room,
            origin_native_id=self.origin_native_id,
            author=Author.model_construct(name=self.author_name, id=self.author_id,
                                          party=self.author_party,
                                          platform=self.author_platform),
            text=self.text, reply_to=self.reply_to, target=self.target, ts=self.ts,
            attachments=tuple(Attachment(**x) for x in json.loads(raw))
            if raw and raw != "[]" else (),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where retention cut a pipe: the chain after ``count`` records was ``head``."""

    pipe: str
    count: int
    head: str
    message_id: str
    cut_at: datetime


@dataclass(frozen=True, slots=True)
class SearchHit:
    ts: datetime
    author: str
    party: str
    platform: str
    pipe: str
    id: str
    kind: str
    target: str | None
    snippet: str  # the matched words in [brackets]


class PipeHead(NamedTuple):
    """Where a pipe stands in one store (``Store.pipe_heads``): its chain's position and
    head (the last row's, else the anchor's, else 0 and the genesis), and its newest
    message's id ("" when it holds none)."""

    n: int
    chain: str
    newest: str
