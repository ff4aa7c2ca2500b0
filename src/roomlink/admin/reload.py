"""Live reload: read the config again and change only what changed, without a restart.

A connector whose party, type and options are the same keeps running, with its
connection and its rooms' delivery workers: when its rooms changed, it is told which
came and went (:meth:`~roomlink.connector.Connector.rooms_changed`: IRC joins and parts
only those channels, an API connector's other streams stay open). One whose options
changed is stopped and started again alone, and so is one that cannot change its rooms
while running; a removed one is stopped. Rooms that no longer receive from any pipe
lose their worker, but their pending copies stay in the store and are delivered when
the room comes back. New parties open their stores before anything is touched, so that
a store that cannot be opened rejects the reload whole, like a config with errors: the
running config stays, and the errors are logged as ``roomlink check`` prints them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

from roomlink.admin.logs import add_secrets, set_connector_names
from roomlink.config import Config, ConfigError, load_config
from roomlink.errors import NotSupported
from roomlink.message.model import RoomRef
from roomlink.relay.topology import Topology, build_topology
from roomlink.store import Store

log = logging.getLogger("roomlink.reload")

# seconds a running connector may take to adjust to its new rooms before it is restarted
ROOMS_CHANGED_TIMEOUT = 30.0


class RunningParts(Protocol):
    """The running daemon as a reload sees it: what runs now, and the steps that change
    it. The daemon carries out each step; the reload decides which, and in what order."""

    @property
    def config(self) -> Config: ...
    @property
    def topology(self) -> Topology: ...
    @property
    def failed_starts(self) -> AbstractSet[str]: ...  # connectors whose start failed
    @property
    def workers(self) -> Mapping[RoomRef, object]: ...  # the rooms with a delivery worker

    async def open_stores(self, config: Config, parties: Sequence[str]) -> dict[str, Store]:
        """The stores of these parties of ``config``, all or none: when one cannot be
        opened, those that were are closed and its error is raised."""
        ...

    async def stop_workers(self, rooms: Sequence[RoomRef], grace: float) -> None:
        """Stop these rooms' workers: one waiting stops now, one handing a message to the
        platform gets ``grace`` seconds to finish; what they had pending stays stored."""
        ...

    async def stop_connector(self, name: str, grace: float) -> None:
        """Stop the connector and forget it (its pacing, its health, a failed start)."""
        ...

    async def update_rooms(self, name: str) -> None:
        """Give the running connector its rooms in the running topology and tell it which
        came and went, without a restart; raises what the connector raised."""
        ...

    def take_over(self, config: Config, topology: Topology, stores: Mapping[str, Store]
                  ) -> list[Store]:
        """``config`` becomes the running one: its new ``stores`` (the ones they replace
        are returned, to close), its pipes (input is routed by them from here on), its
        connectors' platforms and its delivery settings for every worker."""
        ...

    def add_connector(self, name: str) -> bool:
        """Build the connector ``name`` of the running config; False (logged, and shown
        on the status page) when it cannot be built."""
        ...

    def start_room_workers(self) -> None:
        """Start a worker for each room that receives and has none, if its connector
        runs."""
        ...

    async def start_connector(self, name: str) -> None: ...

    def remove_stores(self, parties: Sequence[str]) -> list[Store]:
        """Take these parties' stores out of use, to close them."""
        ...

    async def restart_retention(self) -> None:
        """Retention again, for the running config's parties and days."""
        ...

    async def restart_admin(self) -> None: ...


@dataclass
class ReloadResult:
    ok: bool
    errors: list[str] = field(default_factory=list)  # as `roomlink check` prints them
    changes: list[str] = field(default_factory=list)  # what the reload did, for people

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "errors": self.errors, "changes": self.changes}


@dataclass(frozen=True)
class Heard:
    """Replicas: another replica applied a reload of the config file with this SHA-256."""

    replica: str
    sha256: str


class Reloader:
    def __init__(self, running: RunningParts, source: str | None = None) -> None:
        self.running = running
        # the config file as named on the command line, so that errors read exactly as
        # `roomlink check -c` with the same name prints them
        self.source = source
        self._lock = asyncio.Lock()
        self._closed = False

    async def close(self) -> None:
        """No more reloads: waits for one in progress, so that stopping finds it done."""
        async with self._lock:
            self._closed = True

    async def reload(self, heard: Heard | None = None) -> ReloadResult:
        """Re-read the daemon's config file and apply it; one reload at a time. ``heard``:
        because another replica applied one; nothing to do when this replica runs a
        config with the same SHA-256 already."""
        async with self._lock:
            if self._closed:
                return ReloadResult(False, ["roomlink is stopping"])
            if heard is not None and self.running.config.sha256 == heard.sha256:
                log.debug("replica %s applied config %s: this one runs it already",
                          heard.replica, heard.sha256[:12])
                return ReloadResult(True)
            path = self.source or str(self.running.config.path)
            log.info("reload: reading %s%s", path, "" if heard is None else
                     f" (replica {heard.replica} applied config {heard.sha256[:12]})")
            try:
                config = await asyncio.to_thread(load_config, path)
            except ConfigError as err:
                lines = [str(issue) for issue in err.issues]
                log.error("reload rejected: %d error(s) in %s; the running config stays",
                          len(lines), path)
                for issue in err.issues:
                    log.error("%s", issue, extra={"file": issue.file, "line": issue.line,
                                                  "key": issue.path or None})
                return ReloadResult(False, lines)
            if heard is not None and config.sha256 != heard.sha256:
                log.warning("reload: this replica's config file (%s) differs from the one "
                            "replica %s applied (%s); applying what it reads",
                            config.sha256[:12], heard.replica, heard.sha256[:12])
            try:
                changes = await self._apply(config)
            except _Rejected as exc:
                log.error("reload rejected: %s; the running config stays", exc)
                return ReloadResult(False, [str(exc)])
            set_connector_names(self.running.config.connectors)
            for change in changes:
                log.info("reload: %s", change)
            log.info("reload done: %s", "; ".join(changes) if changes else "nothing changed")
            return ReloadResult(True, changes=changes)

    async def _apply(self, new: Config) -> list[str]:
        d = self.running
        old = d.config
        old_topology = d.topology

        # 1. stores first: the only step that may still refuse the whole reload
        moved = {p for p in new.parties if p in old.parties
                 and new.parties[p].store != old.parties[p].store}
        to_open = [p for p in new.parties if p not in old.parties or p in moved]
        try:
            opened = await d.open_stores(new, to_open)
        except Exception as exc:
            raise _Rejected(str(exc)) from exc
        add_secrets(new.secrets())
        set_connector_names([*old.connectors, *new.connectors])  # the old ones still stop

        retired = {**old_topology.retired, **old_topology.pipes}
        topology = build_topology(new, retired)

        # 2. which connectors keep running: all whose settings are the same; of those,
        # the ones whose rooms changed are told so, and keep their connection
        def same(name: str) -> bool:
            a, b = old.connectors[name], new.connectors[name]
            return (
                a.party == b.party and a.type == b.type and a.options == b.options
                and b.party not in moved and name not in d.failed_starts
            )

        def rooms_same(name: str) -> bool:
            return (old_topology.rooms_of(name) == topology.rooms_of(name)
                    and old_topology.inbound_rooms_of(name) == topology.inbound_rooms_of(name))

        removed = [n for n in old.connectors if n not in new.connectors]
        added = [n for n in new.connectors if n not in old.connectors]
        changed = [n for n in new.connectors if n in old.connectors and not same(n)]
        adjusted = [n for n in new.connectors if n in old.connectors and same(n)
                    and not rooms_same(n)]
        going = set(removed) | set(changed)

        # 3. stop the workers of rooms that go away or whose connector restarts, then
        # those connectors; what they had pending stays in the store
        grace = old.delivery.shutdown_grace
        await d.stop_workers([ref for ref in d.workers
                              if ref.connector in going or ref not in topology.outbound], grace)
        for name in (*removed, *changed):
            await d.stop_connector(name, grace)

        # 4. the new config takes over: input is routed by the new pipes from here on
        retiring = d.take_over(new, topology, opened)

        # 5. running connectors learn their new rooms before those rooms' workers start
        # (which wait for them); one that cannot adjust is restarted instead
        unadjusted: list[str] = []
        for name in adjusted:
            try:
                async with asyncio.timeout(ROOMS_CHANGED_TIMEOUT):
                    await d.update_rooms(name)
                continue
            except NotSupported:
                log.info("connector %s cannot change its rooms while running; "
                         "restarting it", name)
            except Exception as exc:
                log.error("connector %s could not change its rooms (%s); restarting it",
                          name, str(exc) or type(exc).__name__)
            await d.stop_workers([ref for ref in d.workers if ref.connector == name], grace)
            await d.stop_connector(name, grace)
            unadjusted.append(name)
        adjusted = [name for name in adjusted if name not in unadjusted]

        # 6. connectors and workers that are new or restarted
        starting = [name for name in (*changed, *unadjusted, *added) if d.add_connector(name)]
        d.start_room_workers()
        for name in starting:
            try:
                await d.start_connector(name)
            except Exception as exc:  # the others go on; a later reload may fix it
                log.error("connector %s could not start: %s", name, exc)

        # 7. parties that left: their stores close once nothing uses them
        retiring += d.remove_stores([p for p in old.parties if p not in new.parties])
        # retention follows the parties and their days; it held the old store objects
        await d.restart_retention()
        for store in retiring:
            await store.close()

        if new.admin != old.admin:
            # after this reload's own answer went out, if the admin server asked for it
            asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(
                d.restart_admin()))

        kept = [_rooms_change(name, old_topology, topology) for name in adjusted]
        kept += [f"connector {name} restarted (could not change its rooms while running)"
                 for name in unadjusted]
        return _describe(old, new, old_topology.outbound, topology.outbound,
                         removed, added, changed, moved, kept)


class _Rejected(Exception):
    pass


def _rooms_change(name: str, old: Topology, new: Topology) -> str:
    """What changed in a connector's rooms, for people."""
    before, after = set(old.rooms_of(name)), set(new.rooms_of(name))
    parts = [f"+{room}" for room in sorted(after - before)]
    parts += [f"-{room}" for room in sorted(before - after)]
    if not parts:  # only the direction of some room changed
        return f"connector {name}: which rooms are relayed changed (kept its connection)"
    return f"connector {name}: rooms {' '.join(parts)} (kept its connection)"


def _describe(old: Config, new: Config, old_rooms: set[RoomRef], new_rooms: set[RoomRef],
              removed: list[str], added: list[str], changed: list[str], moved: set[str],
              kept: list[str]) -> list[str]:
    out: list[str] = []
    for p in new.parties:
        if p not in old.parties:
            out.append(f"party {p} added (store opened)")
        elif p in moved:
            out.append(f"party {p}: store moved")
        elif new.parties[p] != old.parties[p]:
            out.append(f"party {p}: settings changed")
    out += [f"party {p} removed (store closed)" for p in old.parties if p not in new.parties]
    out += [f"connector {n} added" for n in added]
    out += [f"connector {n} removed" for n in removed]
    out += [f"connector {n} restarted (changed)" for n in changed]
    out += kept
    for name in new.pipes:
        if name not in old.pipes:
            out.append(f"pipe {name} added")
        elif new.pipes[name] != old.pipes[name]:
            out.append(f"pipe {name} changed")
    out += [f"pipe {n} removed" for n in old.pipes if n not in new.pipes]
    out += [f"room {r} now receives" for r in sorted(new_rooms - old_rooms)]
    out += [f"room {r} no longer receives (its pending copies wait in the store)"
            for r in sorted(old_rooms - new_rooms)]
    if new.delivery != old.delivery:
        out.append("delivery settings changed")
    if new.admin != old.admin:
        out.append("admin server settings changed")
    return out
