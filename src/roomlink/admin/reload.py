"""Live reload: read the config again and change only what changed, without a restart.

A connector whose party, type, options and rooms are the same keeps running, with its
connection and its rooms' delivery workers. A changed one is stopped and started again
alone; a removed one is stopped. Rooms that no longer receive from any pipe lose their
worker, but their pending copies stay in the store and are delivered when the room
comes back. New parties open their stores before anything is touched, so that a store
that cannot be opened rejects the reload whole, like a config with errors: the running
config stays, and the errors are logged as ``roomlink check`` prints them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from roomlink.admin.logs import add_secrets, set_connector_names
from roomlink.config.models import Config, ConfigError, load_config
from roomlink.message.model import RoomRef, utcnow
from roomlink.record.retention import RetentionJob
from roomlink.store import Store, open_store

if TYPE_CHECKING:
    from roomlink.daemon.app import Daemon

log = logging.getLogger("roomlink.reload")


@dataclass
class ReloadResult:
    ok: bool
    errors: list[str] = field(default_factory=list)  # as `roomlink check` prints them
    changes: list[str] = field(default_factory=list)  # what the reload did, for people

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "errors": self.errors, "changes": self.changes}


class Reloader:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        # the config file as named on the command line, so that errors read exactly as
        # `roomlink check -c` with the same name prints them
        self.source: str | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def close(self) -> None:
        """No more reloads: waits for one in progress, so that stopping finds it done."""
        async with self._lock:
            self._closed = True

    async def reload(self) -> ReloadResult:
        """Re-read the daemon's config file and apply it; one reload at a time."""
        async with self._lock:
            if self._closed:
                return ReloadResult(False, ["roomlink is stopping"])
            path = self.source or str(self.daemon.config.path)
            log.info("reload: reading %s", path)
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
            try:
                changes = await self._apply(config)
            except _Rejected as exc:
                log.error("reload rejected: %s; the running config stays", exc)
                return ReloadResult(False, [str(exc)])
            set_connector_names(self.daemon.config.connectors)
            for change in changes:
                log.info("reload: %s", change)
            log.info("reload done: %s", "; ".join(changes) if changes else "nothing changed")
            return ReloadResult(True, changes=changes)

    async def _apply(self, new: Config) -> list[str]:
        from roomlink.daemon.app import build_topology

        d = self.daemon
        old = d.config
        old_topology = d.topology
        changes: list[str] = []

        # 1. stores first: the only step that may still refuse the whole reload
        moved = {p for p in new.parties if p in old.parties
                 and new.parties[p].store != old.parties[p].store}
        to_open = [p for p in new.parties if p not in old.parties or p in moved]
        opened: dict[str, Store] = {}
        results = await asyncio.gather(
            *(open_store(p, new.parties[p].store) for p in to_open), return_exceptions=True
        )
        failure: BaseException | None = None
        for party, result in zip(to_open, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                opened[party] = result
        if failure is not None:
            for store in opened.values():
                await store.close()
            raise _Rejected(str(failure))
        add_secrets(new.secrets())
        set_connector_names([*old.connectors, *new.connectors])  # the old ones still stop

        retired = {**old_topology.retired, **old_topology.pipes}
        topology = build_topology(new, retired)

        # 2. which connectors keep running
        def same(name: str) -> bool:
            a, b = old.connectors[name], new.connectors[name]
            return (
                a.party == b.party and a.type == b.type and a.options == b.options
                and b.party not in moved and name not in d.failed_starts
                and old_topology.rooms_of(name) == topology.rooms_of(name)
                and old_topology.inbound_rooms_of(name) == topology.inbound_rooms_of(name)
            )

        removed = [n for n in old.connectors if n not in new.connectors]
        added = [n for n in new.connectors if n not in old.connectors]
        changed = [n for n in new.connectors if n in old.connectors and not same(n)]
        going = set(removed) | set(changed)

        # 3. stop the workers of rooms that go away or whose connector restarts, then
        # those connectors; what they had pending stays in the store
        stopping = [ref for ref in d.workers
                    if ref.connector in going or ref not in topology.outbound]
        grace = old.delivery.shutdown_grace
        workers = [d.workers.pop(ref) for ref in stopping]
        # one waiting for its room or for a retry stops now; one handing a message to
        # the platform gets the grace period to finish (else that copy may be sent twice)
        await asyncio.gather(*(w.stop(grace if w.sending else 0) for w in workers))
        for name in (*removed, *changed):
            connector = d.connectors.pop(name, None)  # None: it could not even be built
            if connector is not None:
                try:
                    await asyncio.wait_for(connector.stop(), max(grace, 1.0))
                except Exception as exc:
                    log.warning("connector %s did not stop cleanly: %s", name, exc)
            d.pacers.pop(name, None)
            d.health.forget(name)
            d.failed_starts.discard(name)

        # 4. the new config takes over: input is routed by the new pipes from here on
        retiring: list[Store] = []
        for party in moved:
            retiring.append(d.stores[party])
        d.stores.update(opened)
        d.config = new
        d.loaded_at = utcnow()
        d.topology = topology
        assert d.router is not None
        d.router.topology = topology
        d.router.platforms = {name: cc.type for name, cc in new.connectors.items()}
        policy = d.retry_policy()
        for worker in d.workers.values():
            worker.pipes = topology.pipes
            worker.policy = policy

        # 5. connectors and workers that are new or restarted
        starting: list[str] = []
        for name in (*changed, *added):
            try:
                d.connectors[name] = d.build_connector(name, new.connectors[name])
                starting.append(name)
            except Exception as exc:
                log.error("connector %s could not be built: %s", name, exc)
                d.health.failed(name, f"could not be built: {exc}")
                d.failed_starts.add(name)
        new_refs = sorted(ref for ref in topology.outbound
                          if ref not in d.workers and ref.connector in d.connectors)
        for ref in new_refs:
            d.add_worker(ref).start()
        for name in starting:
            try:
                await d.start_connector(name)
            except Exception as exc:  # the others go on; a later reload may fix it
                log.error("connector %s could not start: %s", name, exc)

        # 6. parties that left: their stores close once nothing uses them
        for party in [p for p in old.parties if p not in new.parties]:
            retiring.append(d.stores.pop(party))
        # retention follows the parties and their days; it held the old store objects
        if d.retention is not None:
            await d.retention.stop()
        d.retention = RetentionJob(d.stores, {p: pc.retention_days
                                              for p, pc in new.parties.items()})
        d.retention.start()
        for store in retiring:
            await store.close()

        if new.admin != old.admin:
            # after this reload's own answer went out, if the admin server asked for it
            asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(
                d.restart_admin()))

        changes += _describe(old, new, old_topology.outbound, topology.outbound,
                             removed, added, changed, moved)
        return changes


class _Rejected(Exception):
    pass


def _describe(old: Config, new: Config, old_rooms: set[RoomRef], new_rooms: set[RoomRef],
              removed: list[str], added: list[str], changed: list[str], moved: set[str]
              ) -> list[str]:
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
