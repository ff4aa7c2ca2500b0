"""What the status page and ``/api/status`` report: connectors, rooms, pipes, stores, rates.

:class:`Health` follows each connector: whether it is connected, since when, and the
last warning or error logged about it (its own logger, or a delivery to one of its
rooms). :func:`collect` gathers one snapshot for the page and its JSON endpoint, from
the running daemon's parts named by :class:`StatusSource`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter

from roomlink import __version__
from roomlink.admin.logs import connector_of
from roomlink.config.models import Config
from roomlink.message.model import RoomRef, utcnow
from roomlink.relay import metrics
from roomlink.relay.topology import Topology
from roomlink.store import Store

RATE_MINUTES = 10  # the page shows per-minute rates over this many minutes
SAMPLE_EVERY = 5.0  # seconds
FAILURES_SHOWN = 10


@dataclass
class ConnectorHealth:
    up: bool | None = None  # None: not started (yet)
    since: datetime = field(default_factory=utcnow)
    last_error: str | None = None
    last_error_at: datetime | None = None


class Health(logging.Handler):
    """Keeps the latest warning or error per connector, and its up/down history."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.connectors: dict[str, ConnectorHealth] = {}

    def install(self) -> None:
        # on the root logger after setup_logging's handler, whose filter has redacted
        # the record's secrets by the time this one sees it
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        name = connector_of(record)
        if name is not None:
            entry = self.entry(name)
            entry.last_error = record.getMessage()[:500]
            entry.last_error_at = utcnow()

    def entry(self, name: str) -> ConnectorHealth:
        return self.connectors.setdefault(name, ConnectorHealth())

    def observe(self, name: str, up: bool) -> None:
        entry = self.entry(name)
        if entry.up is not up:
            entry.up, entry.since = up, utcnow()

    def started(self, name: str) -> None:
        self.entry(name)

    def failed(self, name: str, error: str) -> None:
        entry = self.entry(name)
        entry.last_error, entry.last_error_at = error[:500], utcnow()
        self.observe(name, False)

    def forget(self, name: str) -> None:
        self.connectors.pop(name, None)


class ConnectorState(Protocol):
    """What the status reads of a running connector."""

    def is_connected(self) -> bool: ...
    def is_ready(self, room: str) -> bool: ...
    def idle_reason(self, room: str) -> str | None: ...
    def details(self) -> dict[str, str]: ...


class RoomDeliveryState(Protocol):
    """What the status reads of a room's delivery worker."""

    @property
    def last_delivery(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...


class StatusSource(Protocol):
    """The running daemon's parts that the status page, ``/api/status`` and ``/healthz``
    read; read-only, and each read gives the current part (a reload replaces them)."""

    @property
    def config(self) -> Config: ...
    @property
    def loaded_at(self) -> datetime: ...  # when the running config was read
    @property
    def replica(self) -> dict[str, Any] | None: ...  # with cluster.enabled: id, connectors
    @property
    def topology(self) -> Topology: ...
    @property
    def health(self) -> Health: ...
    @property
    def stores(self) -> Mapping[str, Store]: ...  # party -> store
    @property
    def connectors(self) -> Mapping[str, ConnectorState]: ...
    @property
    def workers(self) -> Mapping[RoomRef, RoomDeliveryState]: ...  # rooms that receive


def _total(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples
               if s.name.endswith("_total"))


class Rates:
    """Counter samples, turned into per-minute counts for the last minutes."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float, float, float]] = deque(
            maxlen=int((RATE_MINUTES + 1) * 60 / SAMPLE_EVERY) + 2
        )

    def sample(self) -> None:
        self.samples.append((time.monotonic(), _total(metrics.INGESTED),
                             _total(metrics.DELIVERED), _total(metrics.FAILED)))

    def per_minute(self) -> dict[str, list[int | None]]:
        """Oldest minute first; None for a minute before roomlink ran (the minute it
        started in counts from its first sample)."""
        self.sample()
        now = self.samples[-1][0]
        first = self.samples[0]

        def at(t: float) -> tuple[float, float, float, float] | None:
            found = None
            for s in self.samples:
                if s[0] > t + 0.5:
                    break
                found = s
            return found

        out: dict[str, list[int | None]] = {"ingested": [], "delivered": [], "failed": []}
        for minute in range(RATE_MINUTES, 0, -1):
            window_end = now - (minute - 1) * 60
            start = at(now - minute * 60) or (first if first[0] <= window_end else None)
            end = at(window_end)
            for i, key in enumerate(("ingested", "delivered", "failed"), start=1):
                out[key].append(None if start is None or end is None
                                else int(end[i] - start[i]))
        return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


async def _store_report(party: str, store: Store) -> dict[str, Any]:
    report: dict[str, Any] = {"party": party, "store": store.url_for_display}
    try:
        counts, rooms, size, failed, held = await asyncio.gather(
            store.counts(), store.room_counts(), store.size_bytes(),
            store.outbox_entries(state="failed", limit=FAILURES_SHOWN, newest_first=True),
            store.held_counts(),
        )
    except Exception as exc:  # the page must still answer
        report["error"] = str(exc)
        return report
    report.update(counts)
    report["size_bytes"] = size
    try:
        heads = await store.chain_heads()
        report["chain_heads"] = [{"pipe": pipe, "n": n, "head": head}
                                 for pipe, (n, head) in sorted(heads.items())]
    except Exception as exc:  # the record's own checks say more: `roomlink history verify`
        report["chain_heads"] = []
        report["chain_error"] = str(exc)
    report["_rooms"] = rooms
    report["_failed"] = failed
    report["_held"] = held
    return report


class StoreReports:
    """The stores' part of a snapshot, shared for ``ttl`` seconds: several open pages (or
    a fast poller) cost one round of counting, not one each."""

    def __init__(self, ttl: float = 1.5) -> None:
        self.ttl = ttl
        self._at = 0.0
        self._reports: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._at = 0.0

    async def get(self, stores: Mapping[str, Store]) -> list[dict[str, Any]]:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._reports = list(await asyncio.gather(
                    *(_store_report(p, s) for p, s in list(stores.items()))))
                self._at = time.monotonic()
            return [dict(r) for r in self._reports]


async def collect(source: StatusSource, rates: Rates, reports: StoreReports
                  ) -> dict[str, Any]:
    """One snapshot of everything the status page shows (the ``/api/status`` answer)."""
    topology = source.topology
    for name, running in list(source.connectors.items()):
        try:
            source.health.observe(name, running.is_connected())
        except Exception:
            source.health.observe(name, False)
    stores = await reports.get(source.stores)
    counts: dict[tuple[str, str, str], dict[str, int]] = {}
    failures: list[dict[str, Any]] = []
    held: dict[str, int] = {}  # connector -> messages held for the instance it leads to
    for report in stores:
        for connector, n in report.pop("_held", {}).items():
            held[connector] = held.get(connector, 0) + n
        for rc in report.pop("_rooms", []):
            counts.setdefault((rc.pipe, rc.connector, rc.room), {})[rc.state] = rc.count
        for entry in report.pop("_failed", []):
            failures.append({
                "party": report["party"], "id": entry.message_id, "pipe": entry.pipe,
                "connector": entry.connector, "room": entry.room, "attempts": entry.attempts,
                "error": entry.last_error, "at": _iso(entry.done_at),
            })
    failures.sort(key=lambda f: f["at"] or "", reverse=True)

    connectors = []
    for name, cc in source.config.connectors.items():
        health = source.health.entry(name)
        built = source.connectors.get(name)
        # copies waiting for its rooms, and what is held for the instance it leads to
        waiting = held.get(name, 0) + sum(n.get("pending", 0) for (_, c, _), n in counts.items()
                                          if c == name)
        connectors.append({
            "name": name, "type": cc.type, "party": cc.party,
            "connected": bool(health.up), "since": _iso(health.since),
            "last_error": health.last_error, "last_error_at": _iso(health.last_error_at),
            "rooms": topology.rooms_of(name), "waiting": int(waiting),
            "details": built.details() if built is not None else {},
        })
    rooms, pipes = [], []
    for pipe in topology.pipes.values():
        pending = failed = 0
        for r in pipe.rooms:
            worker = source.workers.get(r.ref)
            connector = source.connectors.get(r.ref.connector)
            n = counts.get((pipe.name, r.ref.connector, r.ref.room), {})
            pending += n.get("pending", 0)
            failed += n.get("failed", 0)
            rooms.append({
                "pipe": pipe.name, "connector": r.ref.connector, "room": r.ref.room,
                "party": r.party, "direction": r.direction,
                "ready": (connector.is_ready(r.ref.room)
                          if connector is not None and r.receives else None),
                # not ready as it normally is (no client on an API room): not an error
                "idle": (connector.idle_reason(r.ref.room)
                         if connector is not None and r.receives and connector.is_connected()
                         else None),
                "pending": int(n.get("pending", 0)), "failed": int(n.get("failed", 0)),
                "last_delivery": _iso(worker.last_delivery) if worker else None,
                "last_error": worker.last_error if worker else None,
            })
        pipes.append({"name": pipe.name, "parties": pipe.parties,
                      "rooms": [str(r.ref) for r in pipe.rooms],
                      "pending": pending, "failed": failed})
    return {
        "version": __version__,
        "time": _iso(utcnow()),
        "config": str(source.config.path),
        "loaded_at": _iso(source.loaded_at),
        # replicas: this one's id and the connectors it runs (None: a single process)
        "replica": source.replica,
        "connectors": connectors,
        "pipes": pipes,
        "rooms": rooms,
        "stores": stores,
        "rates": {"minutes": RATE_MINUTES, **rates.per_minute()},
        "failures": failures[:FAILURES_SHOWN],
    }
