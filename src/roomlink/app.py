"""The running daemon: stores, router, delivery workers and connectors wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

from roomlink.admin import AdminServer
from roomlink.config import Config
from roomlink.connector import Connector, ConnectorContext, load_connector_type
from roomlink.delivery import RetryPolicy, RoomWorker
from roomlink.model import RoomRef
from roomlink.pacing import TokenBucket
from roomlink.record.retention import RetentionJob
from roomlink.router import Router
from roomlink.store import OutboxRow, Store, open_store
from roomlink.topology import Pipe, PipeRoom, Topology

log = logging.getLogger("roomlink")


def build_topology(config: Config) -> Topology:
    pipes = {
        name: Pipe(
            name=name,
            rooms=tuple(
                PipeRoom(
                    RoomRef(r.connector, r.room), config.connectors[r.connector].party, r.direction
                )
                for r in pc.rooms
            ),
            nick_format=pc.nick_format,
            join_part=pc.join_part,
            topic=pc.topic,
        )
        for name, pc in config.pipes.items()
    }
    return Topology(pipes)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.topology = build_topology(config)
        self.stores: dict[str, Store] = {}
        self.connectors: dict[str, Connector] = {}
        self.workers: dict[RoomRef, RoomWorker] = {}
        self.router: Router | None = None
        self.admin: AdminServer | None = None
        self.retention: RetentionJob | None = None

    async def start(self) -> None:
        cfg = self.config
        parties = list(cfg.parties)
        opened = await asyncio.gather(
            *(open_store(p, cfg.parties[p].store) for p in parties), return_exceptions=True
        )
        for party, result in zip(parties, opened, strict=True):
            if isinstance(result, BaseException):
                await self._close_stores()
                raise result
            self.stores[party] = result
        platforms = {name: cc.type for name, cc in cfg.connectors.items()}
        router = Router(self.topology, self.stores, platforms, self._on_recorded)
        self.router = router
        for name, cc in cfg.connectors.items():
            store = self.stores[cc.party]
            ctx = ConnectorContext(
                name=name,
                party=cc.party,
                rooms=self.topology.rooms_of(name),
                inbound_rooms=self.topology.inbound_rooms_of(name),
                accept=partial(router.accept, name),
                get_cursor=partial(store.get_cursor, name),
                set_cursor=partial(store.set_cursor, name),
                log=logging.getLogger(f"roomlink.connector.{name}"),
            )
            self.connectors[name] = load_connector_type(cc.type)(cc.options, ctx)
        policy = RetryPolicy(
            cfg.delivery.max_attempts, cfg.delivery.backoff_initial, cfg.delivery.backoff_max
        )
        pacers = {
            name: TokenBucket(c.limits.rate, c.limits.burst) for name, c in self.connectors.items()
        }
        for ref in sorted(self.topology.outbound):
            self.workers[ref] = RoomWorker(
                ref,
                self.connectors[ref.connector],
                self.stores[self.topology.party_of[ref]],
                router,
                self.topology.pipes,
                pacers[ref.connector],
                policy,
            )
        router.start()
        self.retention = RetentionJob(
            self.stores, {p: pc.retention_days for p, pc in cfg.parties.items()}
        )
        self.retention.start()
        for worker in self.workers.values():
            worker.start()
        for name, connector in self.connectors.items():
            try:
                await connector.start()
            except Exception as exc:
                raise RuntimeError(f"connector {name} could not start: {exc}") from exc
            log.info("connector %s (%s) started with rooms %s", name, connector.platform,
                     ", ".join(connector.ctx.rooms) or "(none)")
        if cfg.admin is not None:
            self.admin = AdminServer(self, cfg.admin.listen)
            await self.admin.start()

    def _on_recorded(self, store: Store, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            worker = self.workers.get(RoomRef(row.connector, row.room))
            if worker is not None:
                worker.push(row)

    async def stop(self) -> None:
        """Stop taking input, give in-flight deliveries a grace period, close the stores."""
        grace = self.config.delivery.shutdown_grace
        if self.admin is not None:
            await self.admin.stop()
        if self.router is not None:
            await self.router.close()
        await asyncio.gather(*(w.stop(grace) for w in self.workers.values()))
        if self.retention is not None:
            await self.retention.stop()
        for name, connector in self.connectors.items():
            try:
                await asyncio.wait_for(connector.stop(), max(grace, 1.0))
            except Exception as exc:  # stopping must go on for the others
                log.warning("connector %s did not stop cleanly: %s", name, exc)
        await self._close_stores()

    async def _close_stores(self) -> None:
        for store in self.stores.values():
            await store.close()
