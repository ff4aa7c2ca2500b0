"""Who is where: the pipes, rooms and parties of a config, indexed for the router.

:func:`build_topology` reads a config through the small protocols below, which the
config's models fit as they are: the message path never imports the config package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from roomlink.message.model import Kind, RoomRef


@dataclass(frozen=True, slots=True)
class PipeRoom:
    ref: RoomRef
    party: str
    direction: str  # in | out | inout

    @property
    def receives(self) -> bool:
        return self.direction in ("out", "inout")

    @property
    def speaks(self) -> bool:
        return self.direction in ("in", "inout")


@dataclass(frozen=True, slots=True)
class Pipe:
    name: str
    rooms: tuple[PipeRoom, ...]
    nick_format: str | None = None
    join_part: bool = False
    topic: bool = False

    @property
    def parties(self) -> list[str]:
        return sorted({r.party for r in self.rooms})

    def relays(self, kind: Kind) -> bool:
        if kind in (Kind.JOIN, Kind.PART):
            return self.join_part
        if kind is Kind.TOPIC:
            return self.topic
        return True

    def destinations(self, origin: RoomRef, party: str) -> tuple[RoomRef, ...]:
        """The rooms of ``party`` that a message said in ``origin`` goes to."""
        return tuple(
            r.ref for r in self.rooms if r.party == party and r.receives and r.ref != origin
        )


class Topology:
    def __init__(self, pipes: Mapping[str, Pipe], retired: Mapping[str, Pipe] | None = None
                 ) -> None:
        self.pipes = dict(pipes)
        # pipes of earlier configs (live reload): a message accepted just before its pipe
        # went away is still recorded for the parties of the pipe it was said in
        self.retired = {k: v for k, v in (retired or {}).items() if k not in self.pipes}
        self.inbound: dict[RoomRef, list[Pipe]] = {}  # rooms whose messages enter pipes
        self.outbound: set[RoomRef] = set()  # rooms that receive from some pipe
        self.party_of: dict[RoomRef, str] = {}
        self._routes: dict[tuple[str, RoomRef],
                           tuple[Pipe, tuple[tuple[str, tuple[RoomRef, ...]], ...]]] = {}
        for pipe in self.pipes.values():
            for room in pipe.rooms:
                self.party_of[room.ref] = room.party
                if room.speaks:
                    self.inbound.setdefault(room.ref, []).append(pipe)
                if room.receives:
                    self.outbound.add(room.ref)

    def routes(self, pipe: Pipe, origin: RoomRef) -> tuple[tuple[str, tuple[RoomRef, ...]], ...]:
        """Each party of ``pipe`` (in order) with its rooms that a message said in ``origin``
        goes to. Worked out once per pipe and room: a reload builds a new Topology, and
        the ingest asks for every message (bench/README.md, session 28)."""
        key = (pipe.name, origin)
        found = self._routes.get(key)
        if found is None or found[0] is not pipe:
            routes = tuple((p, pipe.destinations(origin, p)) for p in pipe.parties)
            found = self._routes[key] = (pipe, routes)
        return found[1]

    def pipe(self, name: str) -> Pipe:
        """A pipe of this config, or of an earlier one; KeyError if there never was one."""
        found = self.pipes.get(name) or self.retired.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def rooms_of(self, connector: str) -> list[str]:
        return sorted({ref.room for ref in self.party_of if ref.connector == connector})

    def inbound_rooms_of(self, connector: str) -> set[str]:
        return {ref.room for ref in self.inbound if ref.connector == connector}


# -- what a topology is built from (the config's models fit these) -----------------------
class RoomSettings(Protocol):
    @property
    def connector(self) -> str: ...
    @property
    def room(self) -> str: ...
    @property
    def direction(self) -> str: ...  # in | out | inout


class PipeSettings(Protocol):
    @property
    def rooms(self) -> Sequence[RoomSettings]: ...
    @property
    def nick_format(self) -> str | None: ...
    @property
    def join_part(self) -> bool: ...
    @property
    def topic(self) -> bool: ...


class ConnectorSettings(Protocol):
    @property
    def party(self) -> str: ...


class TopologySettings(Protocol):
    """The pipes of a config, and each connector's party."""

    @property
    def pipes(self) -> Mapping[str, PipeSettings]: ...
    @property
    def connectors(self) -> Mapping[str, ConnectorSettings]: ...


def build_topology(settings: TopologySettings, retired: Mapping[str, Pipe] | None = None
                   ) -> Topology:
    """The topology of a config; ``retired``: the pipes of earlier configs (live reload)."""
    pipes = {
        name: Pipe(
            name=name,
            rooms=tuple(
                PipeRoom(RoomRef(r.connector, r.room), settings.connectors[r.connector].party,
                         r.direction)
                for r in pc.rooms
            ),
            nick_format=pc.nick_format,
            join_part=pc.join_part,
            topic=pc.topic,
        )
        for name, pc in settings.pipes.items()
    }
    return Topology(pipes, retired)
