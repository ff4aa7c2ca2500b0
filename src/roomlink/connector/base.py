"""What a connector plugin is, and how the core finds one.

A connector knows its platform and nothing of pipes, parties or stores. The core gives
it a :class:`ConnectorContext` (its name, party, rooms, a way to hand in events and to
keep a cursor) and asks it to start, stop, send, edit and delete, and, when a live
reload changes its rooms but not its options, tells it which rooms came and went.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from roomlink.connector.files import Files
from roomlink.connector.handin import hand_in
from roomlink.errors import NotSupported
from roomlink.message.model import Inbound, Message, Outbound

ENTRY_POINT_GROUP = "roomlink.connectors"


@dataclass(frozen=True, slots=True)
class Limits:
    """What the core must respect when it delivers to this connector."""

    max_text_length: int | None = None  # in characters of canonical text; longer is split
    rate: float | None = None  # sustained sends per second across the connector; None: no pacing
    burst: int = 1  # sends allowed at once before pacing starts
    # per destination room, every bucket applies: ((sends per second, burst), ...), e.g.
    # Telegram's "1 per second per chat" and "20 per minute in a group" as two buckets
    room_rates: tuple[tuple[float, int], ...] = ()
    can_impersonate: bool = False  # can post under another name (no nick prefix needed)
    default_nick_format: str = "{nick}"
    edits: bool = False
    deletes: bool = False
    files: bool = False  # posts files natively (Outbound.files); else they go as text lines
    max_file_bytes: int | None = None  # larger files go as text lines (and a link)
    # at most this many bytes of files natively per message (email: per mail); the files
    # that would pass it go as text lines (and a link), the first ones that fit natively
    max_total_file_bytes: int | None = None
    # this connector's rooms lead to another roomlink instance that hosts (orders) their
    # conversations (the connecting side of a federation link): a message said in another
    # room of such a pipe is held, sent there through ``ctx.held_after``, and recorded
    # only when it comes back placed, through ``ctx.place`` (docs/ARCHITECTURE.md)
    upstream: bool = False


class ConnectorOptions(BaseModel):
    """Base of every connector's own options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_host_port(value: str) -> str:
    """Validate a ``host:port`` listen address (for options models)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
    return value


AcceptFn = Callable[[Inbound], Awaitable[list[str]]]
HistoryFn = Callable[[str, str, int], Awaitable[list[Outbound] | None]]
PlaceFn = Callable[[str, Message, Collection[str] | None], Awaitable[list[str]]]
HeldFn = Callable[[int, int], Awaitable[list[tuple[int, str, Message]]]]
ReleaseFn = Callable[[Sequence[str]], Awaitable[None]]


@dataclass(slots=True)
class ConnectorContext:
    name: str  # the connector's name in the config, e.g. "agency-irc"
    party: str
    rooms: list[str]  # every room of this connector named in a pipe
    accept: AcceptFn  # returns the message ids once durably stored in every store
    get_cursor: Callable[[str], Awaitable[str | None]]
    set_cursor: Callable[[str, str], Awaitable[None]]  # only after hand_in() returned True
    inbound_rooms: set[str] = field(default_factory=set)  # rooms whose input is relayed
    # (room, message id, limit) -> what the room received after that message, as parts,
    # from the party's store; None when the id is unknown. For connectors whose clients
    # can catch up (the API's streams); the core provides it.
    history_after: HistoryFn | None = None
    # keeping received files and reading files to post (see roomlink.connector.files);
    # the core provides it
    files: Files | None = None
    # a folder for the connector's own files (an encryption key database, a cache) that
    # must outlive restarts: beside its party's store (README "Connector state"). The
    # connector creates it when it needs it; None when the core gives none
    state_dir: Path | None = None
    # -- for a link to another roomlink instance (federation); the core provides them --
    # (room, message, parties) records a whole message said on (or placed by) the other
    # instance into the conversation of ``room``; returns its id once recorded in every
    # store, raises BadInput (logged and counted) when it may not be recorded: its author
    # not of ``parties`` (None: any), a party or room of this instance, an unknown reply,
    # an edit of another party's message
    place: PlaceFn | None = None
    # (after held id, limit) -> messages said here, held for this connector's peer
    # (Limits.upstream), oldest first, as (held id, room, message)
    held_after: HeldFn | None = None
    release: ReleaseFn | None = None  # hold these message ids no longer (the peer refused)
    held_signal: asyncio.Event = field(default_factory=asyncio.Event)  # set on a new hold
    instance_key: str | None = None  # this instance's Ed25519 private key (PEM), secret
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("roomlink.connector"))

    async def hand_in(self, event: Inbound) -> bool:
        """Store one inbound event durably; True when the platform's cursor may move past
        it (stored, or skipped with a warning as bad input), False when the daemon is
        shutting down (stop handing in; leave the cursor). Store failures are retried with
        backoff until they pass. See :mod:`roomlink.connector.handin`."""
        return await hand_in(self.accept, event, connector=self.name, log=self.log)


class Connector(ABC):
    """A connector type. Subclasses set ``platform`` and ``Options``."""

    platform: ClassVar[str]
    Options: ClassVar[type[ConnectorOptions]]

    def __init__(self, options: ConnectorOptions, ctx: ConnectorContext) -> None:
        self.options = options
        self.ctx = ctx

    @property
    def limits(self) -> Limits:
        return Limits()

    @classmethod
    def normalize_room(cls, room: str) -> str:
        """The one spelling of ``room`` used everywhere (config, stores, send); raise
        ValueError, with a message for the admin, when it cannot be a room here."""
        return room

    @abstractmethod
    async def start(self) -> None:
        """Connect and begin handing inbound events in (``ctx.hand_in``); return once running."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop taking input and disconnect."""

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        """A live reload changed this connector's rooms; its options did not change, so it
        keeps running and keeps its connection.

        ``ctx.rooms`` and ``ctx.inbound_rooms`` already hold the new rooms when this is
        called. ``added``: rooms new to this connector (their delivery workers start right
        after this returns and wait for :meth:`wait_ready`); ``removed``: rooms it no
        longer has (their workers are already stopped). Both may be empty when only the
        direction of a room changed (``ctx.inbound_rooms``). Return promptly: joining a
        new room may go on in the background, as at start.

        The default does nothing, which is right for a connector that reads ``ctx.rooms``
        and ``ctx.inbound_rooms`` each time it needs them. One that keeps state per room
        must override it; one that cannot adjust may raise :class:`NotSupported`, and is
        then stopped and started again with its new rooms.
        """
        return None

    @abstractmethod
    def is_ready(self, room: str) -> bool:
        """Whether ``room`` can take a message now."""

    def is_connected(self) -> bool:
        """Whether the platform connection is up now (the status page shows it).

        By default: some room can take a message. Override where the connection and the
        rooms differ (a server listening with no client yet, a network with no channel).
        """
        return any(self.is_ready(room) for room in self.ctx.rooms)

    def details(self) -> dict[str, str]:
        """What the status page shows of this connector besides up or down (a link: its
        role, the peer's key, its last message). The default: nothing."""
        return {}

    def idle_reason(self, room: str) -> str | None:
        """Why ``room`` is not ready, when that is its normal state rather than a fault
        (an API room nobody watches: "no client"): the status page shows it neutral, not
        as an error. None (the default): a room that is not ready is waiting for trouble
        to pass."""
        return None

    @abstractmethod
    async def wait_ready(self, room: str) -> None:
        """Return when ``room`` can take a message."""

    @abstractmethod
    async def send(self, out: Outbound) -> str:
        """Post one message part; return the platform's id for it.

        Raise :class:`RoomDown` when the room went away, :class:`PermanentError` when the
        platform refuses it for good, :class:`ConnectorError` for anything worth a retry.
        """

    async def edit(self, out: Outbound) -> None:
        raise NotSupported(f"{self.platform} cannot edit messages")

    async def delete(self, out: Outbound) -> None:
        raise NotSupported(f"{self.platform} cannot delete messages")


def connector_type_names() -> list[str]:
    """The names of every connector type installed (loading none of them)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_connector_type(name: str) -> type[Connector]:
    """Import one connector type by its entry-point name; KeyError if none is installed."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"entry point {name!r} is not a roomlink Connector: {cls!r}")
        return cls
    raise KeyError(name)
