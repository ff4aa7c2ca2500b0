"""The running daemon: stores, router, delivery workers and connectors wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from functools import partial

from roomlink.admin.logs import set_connector_names
from roomlink.admin.reload import Reloader
from roomlink.admin.server import AdminServer
from roomlink.admin.status import Health
from roomlink.config.models import Config, ConnectorConfig
from roomlink.connector.base import Connector, ConnectorContext, load_connector_type
from roomlink.connector.pacing import TokenBucket
from roomlink.message.model import RoomRef, utcnow
from roomlink.record.retention import RetentionJob
from roomlink.relay.delivery import RetryPolicy, RoomWorker
from roomlink.relay.replay import history_after
from roomlink.relay.router import Router
from roomlink.relay.topology import Pipe, PipeRoom, Topology
from roomlink.store import OutboxRow, Store, open_store

log = logging.getLogger("roomlink")

RESCAN_INTERVAL = 2.0  # seconds between looks for copies an operator put back in the queue


def build_topology(config: Config, retired: Mapping[str, Pipe] | None = None) -> Topology:
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
    return Topology(pipes, retired)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.topology = build_topology(config)
        self.stores: dict[str, Store] = {}
        self.connectors: dict[str, Connector] = {}
        self.pacers: dict[str, TokenBucket] = {}
        self.workers: dict[RoomRef, RoomWorker] = {}
        self.router: Router | None = None
        self.admin: AdminServer | None = None
        self.retention: RetentionJob | None = None
        self.health = Health()
        self.reloader = Reloader(self)
        self._rescans: asyncio.Task[None] | None = None
        self.loaded_at = utcnow()  # when the running config was read
        self.failed_starts: set[str] = set()  # connectors whose start failed in a reload

    async def start(self) -> None:
        cfg = self.config
        self.health.install()
        set_connector_names(cfg.connectors)
        parties = list(cfg.parties)
        opened = await asyncio.gather(
            *(
                open_store(
                    p,
                    cfg.parties[p].store,
                    async_delivery_marks=cfg.parties[p].async_delivery_marks,
                )
                for p in parties
            ),
            return_exceptions=True,
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
            self.connectors[name] = self.build_connector(name, cc)
        for ref in sorted(self.topology.outbound):
            self.add_worker(ref)
        router.start()
        self.retention = RetentionJob(
            self.stores, {p: pc.retention_days for p, pc in cfg.parties.items()}
        )
        self.retention.start()
        for worker in self.workers.values():
            worker.start()
        for name in self.connectors:
            try:
                await self.start_connector(name)
            except Exception as exc:
                raise RuntimeError(f"connector {name} could not start: {exc}") from exc
        self._rescans = asyncio.create_task(self._rescan_loop(), name="outbox rescans")
        await self.restart_admin()

    async def restart_admin(self) -> None:
        """Start (or restart, after a reload changed it) the admin server, if configured."""
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self.config.admin is not None:
            admin = AdminServer(self, self.config.admin)
            await admin.start()
            self.admin = admin

    # -- parts that a reload builds again -----------------------------------------------
    def build_connector(self, name: str, cc: ConnectorConfig) -> Connector:
        assert self.router is not None
        store = self.stores[cc.party]
        ctx = ConnectorContext(
            name=name,
            party=cc.party,
            rooms=self.topology.rooms_of(name),
            inbound_rooms=self.topology.inbound_rooms_of(name),
            accept=partial(self.router.accept, name),
            get_cursor=partial(store.get_cursor, name),
            set_cursor=partial(store.set_cursor, name),
            log=logging.getLogger(f"roomlink.connector.{name}"),
        )
        connector = load_connector_type(cc.type)(cc.options, ctx)
        ctx.history_after = partial(
            history_after, store, lambda: self.topology, lambda: connector.limits, name
        )
        self.pacers[name] = TokenBucket(connector.limits.rate, connector.limits.burst)
        return connector

    async def start_connector(self, name: str) -> None:
        connector = self.connectors[name]
        try:
            await connector.start()
        except Exception as exc:
            self.health.failed(name, f"could not start: {exc}")
            self.failed_starts.add(name)  # the next reload tries again
            raise
        self.failed_starts.discard(name)
        self.health.started(name)
        log.info("connector %s (%s) started with rooms %s", name, connector.platform,
                 ", ".join(connector.ctx.rooms) or "(none)")

    def add_worker(self, ref: RoomRef) -> RoomWorker:
        assert self.router is not None
        worker = RoomWorker(
            ref,
            self.connectors[ref.connector],
            self.stores[self.topology.party_of[ref]],
            self.router,
            self.topology.pipes,
            self.pacers[ref.connector],
            self.retry_policy(),
        )
        self.workers[ref] = worker
        return worker

    def retry_policy(self) -> RetryPolicy:
        d = self.config.delivery
        return RetryPolicy(d.max_attempts, d.backoff_initial, d.backoff_max)

    def _on_recorded(self, store: Store, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            worker = self.workers.get(RoomRef(row.connector, row.room))
            if worker is not None:
                worker.push(row)

    # -- copies put back in the queue (``roomlink outbox retry``) -------------------------
    async def rescan(self) -> None:
        """Have each worker go back to the store when an older copy became pending again
        (retried by an operator, maybe from another process), so that it is delivered in
        its original place in the order."""
        for party, store in list(self.stores.items()):
            try:
                heads = await store.pending_heads()
            except Exception as exc:  # the next round tries again
                log.warning("store of party %s: cannot look for retried copies: %s", party, exc)
                continue
            for ref, worker in list(self.workers.items()):
                head = heads.get((ref.connector, ref.room))
                if worker.store is store and head is not None and head <= worker.last_id:
                    worker.rescan()

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_INTERVAL)
            await self.rescan()

    async def stop(self) -> None:
        """Stop taking input, give in-flight deliveries a grace period, close the stores."""
        await self.reloader.close()
        grace = self.config.delivery.shutdown_grace
        if self._rescans is not None:
            self._rescans.cancel()
            await asyncio.gather(self._rescans, return_exceptions=True)
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
        self.health.uninstall()

    async def _close_stores(self) -> None:
        for store in self.stores.values():
            await store.close()
