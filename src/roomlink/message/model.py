"""The canonical message model: one shape for every platform and every store."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Deterministic ids for messages that carry a platform id: re-ingesting the same platform
# message (a retried POST, a Telegram update seen again after a crash) yields the same id,
# so every store can de-duplicate it even if the crash hit between two stores' commits.
_ID_NAMESPACE = uuid.UUID("5d7f3a3e-6f0e-4c52-9f7b-2f1f3c0e8a11")


# Every store must hold every string the same way: PostgreSQL's text and JSON refuse NUL,
# and a lone surrogate cannot be encoded as UTF-8 by any driver. Both become U+FFFD here,
# before any store sees the message, so that one store never takes what another refuses.
_UNHOLDABLE = re.compile("[\x00\ud800-\udfff]")


def clean_str(value: str) -> str:
    """``value`` with NUL and unpaired surrogates replaced by U+FFFD (pairs are joined)."""
    if _UNHOLDABLE.search(value) is None:
        return value
    joined = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", "\ufffd")


def clean_opt(value: str | None) -> str | None:
    return None if value is None else clean_str(value)


Text = Annotated[str, AfterValidator(clean_str)]


class Kind(StrEnum):
    MESSAGE = "message"
    ACTION = "action"  # IRC /me, Slack /me, ...
    EDIT = "edit"
    DELETE = "delete"
    JOIN = "join"
    PART = "part"
    TOPIC = "topic"


@dataclass(frozen=True, slots=True, order=True)
class RoomRef:
    """One room on one connector."""

    connector: str
    room: str

    def __str__(self) -> str:
        return f"{self.connector}:{self.room}"


class Author(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: Text
    id: Text | None = None  # the platform's user id, when it has one
    party: str
    platform: str
    # the author's picture where the origin platform gave one (Slack posts it as icon_url);
    # in memory only: not kept in the stores nor in exports, so a delivery made after a
    # restart goes without it
    avatar_url: str | None = Field(default=None, exclude=True)


class Attachment(BaseModel):
    """A file of a message. ``sha256`` is set when every party's store keeps its bytes
    (content-addressed); without it the file is metadata only: a platform's ``url``,
    and a ``note`` saying why the bytes are not kept (too big, download failed)."""

    model_config = ConfigDict(frozen=True)

    url: Text | None = None  # where the platform had it, when the bytes are not kept
    name: Text | None = None  # cleaned: no path, no control or bidi characters
    mime: Text | None = None  # the file's type, e.g. image/png
    size: int | None = None  # in bytes
    sha256: Text | None = None  # hex digest of the kept bytes
    note: Text | None = None  # why the bytes are not kept, for people to read


def is_digest(value: str) -> bool:
    """Whether ``value`` is a SHA-256 as roomlink writes one (64 lowercase hex digits):
    a file's key, a chain value."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """A message as every party's store records it; ``id`` is the same in all of them."""

    model_config = ConfigDict(frozen=True)

    id: str
    pipe: str
    kind: Kind = Kind.MESSAGE
    origin_connector: str
    origin_room: str
    origin_native_id: Text | None = None
    author: Author
    text: Text = ""  # canonical rich text: a CommonMark subset (see roomlink.message.markup)
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None  # id of the message this one answers
    target: str | None = None  # for edit/delete: id of the message changed
    ts: datetime = Field(default_factory=utcnow)  # time at the origin

    @property
    def origin(self) -> RoomRef:
        return RoomRef(self.origin_connector, self.origin_room)


def new_message_id(pipe: str, origin: RoomRef, native_id: str | None) -> str:
    """A globally unique id; deterministic when the platform gave the message an id."""
    if native_id is None:
        return uuid.uuid4().hex
    key = "\x00".join((pipe, origin.connector, origin.room, native_id))
    return uuid.uuid5(_ID_NAMESPACE, key).hex


@dataclass(slots=True)
class InboundAuthor:
    name: str
    id: str | None = None
    avatar_url: str | None = None  # an https URL of the author's picture, when known


@dataclass(slots=True)
class Inbound:
    """What a connector hands the core for one event said in one of its rooms.

    References to other messages (reply, edit, delete) are the platform's own ids in
    this same room; the core maps them to message ids through the stores.
    """

    room: str
    author: InboundAuthor
    text: str = ""
    kind: Kind = Kind.MESSAGE
    native_id: str | None = None
    reply_to_native: str | None = None
    target_native: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    ts: datetime | None = None


@dataclass(slots=True)
class Outbound:
    """One message for a connector to post (or edit, or delete) in one of its rooms."""

    room: str
    message: Message
    text: str  # the canonical text of this part (long messages are split by the core)
    display_name: str  # the author as the pipe's nick_format renders it
    delivery_key: str  # stable across retries: lets a platform de-duplicate a re-send
    reply_to_native: str | None = None  # native id in this room of the message replied to
    target_native: str | None = None  # native id in this room of the message edited/deleted
    part: int = 0
    parts: int = 1
    # the kept files the connector should post natively with this part (Limits.files);
    # others are already lines of ``text``
    files: tuple[Attachment, ...] = ()
