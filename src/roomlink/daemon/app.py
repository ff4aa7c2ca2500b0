"""The running daemon: stores, router, delivery workers and connectors wired together.

The operator's surface gets narrow, typed views of it, never the daemon as such: the
admin server and the status page read it as a :class:`~roomlink.admin.status.StatusSource`,
and a live reload changes it step by step through
:class:`~roomlink.admin.reload.RunningParts`, whose steps are the methods below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from roomlink.admin.logs import set_connector_names
from roomlink.admin.reload import Reloader, ReloadResult
from roomlink.admin.server import AdminServer
from roomlink.admin.status import Health
from roomlink.config.models import Config, ConnectorConfig
from roomlink.connector.base import Connector, ConnectorContext, load_connector_type
from roomlink.connector.pacing import TokenBucket
from roomlink.daemon.retention import RetentionJob
from roomlink.errors import ShuttingDown
from roomlink.message.model import Inbound, RoomRef, utcnow
from roomlink.relay.delivery import RetryPolicy, RoomWorker
from roomlink.relay.files import StoreFiles
from roomlink.relay.placing import held_after
from roomlink.relay.repair import repair_stores
from roomlink.relay.replay import history_after
from roomlink.relay.router import Router
from roomlink.relay.topology import Topology, build_topology
from roomlink.store import OutboxRow, Store, open_store

if TYPE_CHECKING:  # replicas only: a daemon without them never loads asyncpg (3.4 MiB)
    from roomlink.daemon.cluster import Cluster
    from roomlink.daemon.cluster_reload import ReloadNews

log = logging.getLogger("roomlink")
reload_log = logging.getLogger("roomlink.reload")  # connectors added by a reload

Accept = Callable[[Inbound], Awaitable[list[str]]]
RESCAN_INTERVAL = 2.0  # seconds between looks for copies an operator put back in the queue


class Daemon:
    """``source``: the config file as named on the command line (for a reload's errors)."""

    def __init__(self, config: Config, source: str | None = None) -> None:
        self.config = config
        self.topology: Topology = build_topology(config)
        # one map for the daemon's life: the router and the retention job read it
        self.stores: dict[str, Store] = {}
        self.connectors: dict[str, Connector] = {}
        self.pacers: dict[str, TokenBucket] = {}
        self.workers: dict[RoomRef, RoomWorker] = {}
        self.router: Router | None = None
        self.admin: AdminServer | None = None
        self.retention: RetentionJob | None = None
        self.health = Health()
        self.reloader = Reloader(self, source)
        self._rescans: asyncio.Task[None] | None = None
        self.loaded_at = utcnow()  # when the running config was read
        self.failed_starts: set[str] = set()  # connectors whose start failed in a reload
        # replicas (cluster.enabled): which connectors run here is the cluster's to say
        self.cluster: Cluster | None = None
        self.news: ReloadNews | None = None  # a reload reaches every replica
        self.upstream: set[str] = set()  # links to the instance hosting their pipes

    async def start(self) -> None:
        cfg = self.config
        self.health.install()
        set_connector_names(cfg.connectors)
        self.stores.update(await self.open_stores(cfg, list(cfg.parties)))
        router = Router(self.topology, self.stores, self._platforms(), self._on_recorded)
        router.upstream = self.upstream  # the same set: built and stopped links change it
        router.on_held = self._on_held
        self.router = router
        if cfg.cluster.enabled:
            from roomlink.daemon.cluster import Cluster
            from roomlink.daemon.cluster_reload import ReloadNews

            cluster = self.cluster = Cluster(self)
            await cluster.open()
            self.news = ReloadNews(cluster, self, self.reloader)
            router.pipe_lock = cluster.pipe_lock
            # other replicas append meanwhile: the pipes are theirs again after the repair
            async with cluster.pipe_lock.hold(sorted(self.topology.pipes)):
                await repair_stores(self.topology, self.stores)
        else:
            # before any input: what a kill -9 left in some parties' stores only goes into all
            await repair_stores(self.topology, self.stores)
            for name, cc in cfg.connectors.items():
                self.connectors[name] = self._build_connector(name, cc)
        router.start()
        await self.restart_retention()
        self.start_room_workers()
        for name in self.connectors:
            try:
                await self.start_connector(name)
            except Exception as exc:
                raise RuntimeError(f"connector {name} could not start: {exc}") from exc
        if self.cluster is not None:
            self.cluster.start()  # the connectors start as their leases are won
        if self.news is not None:
            await self.news.open()
        self._rescans = asyncio.create_task(self._rescan_loop(), name="outbox rescans")
        await self.restart_admin()

    @property
    def replica(self) -> dict[str, Any] | None:
        """With replicas: this one's id and the connectors it runs (the status page)."""
        return None if self.cluster is None else self.cluster.status()

    async def reload(self) -> ReloadResult:
        """Re-read the config file and apply what changed (SIGHUP, ``POST /api/reload``);
        with replicas, the others are told to do the same."""
        result = await self.reloader.reload()
        if result.ok and self.news is not None:
            await self.news.announce()
        return result

    async def restart_admin(self) -> None:
        """Start (or restart, after a reload changed it) the admin server, if configured."""
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self.config.admin is not None:
            admin = AdminServer(self.config.admin, self, rescan=self.rescan, reload=self.reload)
            await admin.start()
            self.admin = admin

    async def restart_retention(self) -> None:
        """Retention for the running config's parties and days (the old job held the old
        store objects)."""
        if self.retention is not None:
            await self.retention.stop()
        self.retention = RetentionJob(
            self.stores, {p: pc.retention_days for p, pc in self.config.parties.items()}
        )
        self.retention.start()

    # -- stores --------------------------------------------------------------------------
    async def open_stores(self, config: Config, parties: Sequence[str]) -> dict[str, Store]:
        """These parties' stores, all or none: when one cannot be opened, those that were
        are closed again and its error is raised."""
        results = await asyncio.gather(
            *(
                open_store(p, config.parties[p].store,
                           async_delivery_marks=config.parties[p].async_delivery_marks,
                           files=config.parties[p].files)
                for p in parties
            ),
            return_exceptions=True,
        )
        opened: dict[str, Store] = {}
        failure: BaseException | None = None
        for party, result in zip(parties, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                opened[party] = result
        if failure is not None:
            for store in opened.values():
                await store.close()
            raise failure
        return opened

    def remove_stores(self, parties: Sequence[str]) -> list[Store]:
        """Take these parties' stores out of use; the caller closes them."""
        return [self.stores.pop(party) for party in parties]

    # -- what a reload changes -------------------------------------------------------------
    def take_over(self, config: Config, topology: Topology, stores: Mapping[str, Store]
                  ) -> list[Store]:
        """``config`` becomes the running one, with its new ``stores`` (the ones they
        replace are returned, to close), its pipes (input is routed by them from here on),
        its connectors' platforms and its delivery settings for every worker."""
        replaced = [self.stores[party] for party in stores if party in self.stores]
        self.stores.update(stores)
        self.config = config
        self.loaded_at = utcnow()
        self.topology = topology
        assert self.router is not None
        self.router.update(topology, self._platforms())
        policy = self.retry_policy()
        for worker in self.workers.values():
            worker.pipes = topology.pipes
            worker.policy = policy
        return replaced

    def add_connector(self, name: str) -> bool:
        """Build the running config's connector ``name``; False when it cannot be built
        (logged, shown on the status page, and tried again by the next reload). With
        replicas, False as well when another replica runs it (quietly: it runs there)."""
        if self.cluster is not None and name not in self.cluster.held:
            return False
        try:
            self.connectors[name] = self._build_connector(name, self.config.connectors[name])
        except Exception as exc:
            reload_log.error("connector %s could not be built: %s", name, exc)
            self.health.failed(name, f"could not be built: {exc}")
            self.failed_starts.add(name)
            return False
        return True

    async def update_rooms(self, name: str) -> None:
        """Give the running connector ``name`` its rooms in the running topology and tell
        it which came and went (:meth:`Connector.rooms_changed`); it keeps its connection.
        What the connector raises is raised: the caller then restarts it instead. With
        replicas, one another replica runs is left alone (it changes there)."""
        connector = self.connectors.get(name)
        if connector is None and self.cluster is not None:
            return
        assert connector is not None
        ctx = connector.ctx
        before = set(ctx.rooms)
        ctx.rooms = self.topology.rooms_of(name)
        ctx.inbound_rooms = self.topology.inbound_rooms_of(name)
        added = [room for room in ctx.rooms if room not in before]
        removed = sorted(before - set(ctx.rooms))
        await connector.rooms_changed(added, removed)

    async def stop_connector(self, name: str, grace: float) -> None:
        """Stop the connector and forget it: its pacing, its health, a failed start."""
        connector = self.connectors.pop(name, None)  # None: it could not even be built
        if connector is not None:
            await _stop_connector(name, connector, grace)
        self.pacers.pop(name, None)
        self.upstream.discard(name)
        self.health.forget(name)
        self.failed_starts.discard(name)

    async def run_connector(self, name: str) -> None:
        """Replicas: this one won the connector's lease; start it and its rooms' workers."""
        if not self.add_connector(name):
            raise RuntimeError(f"connector {name} could not be built")
        self.start_room_workers()
        await self.start_connector(name)

    async def halt_connector(self, name: str, grace: float) -> None:
        """Replicas: the connector goes to another replica (or its lease was lost)."""
        await self.stop_workers([ref for ref in self.workers if ref.connector == name], grace)
        await self.stop_connector(name, grace)

    def start_room_workers(self) -> None:
        """Start a worker for each room that receives and has none, if its connector runs."""
        for ref in sorted(self.topology.outbound):
            if ref not in self.workers and ref.connector in self.connectors:
                self._add_worker(ref).start()

    async def stop_workers(self, rooms: Sequence[RoomRef], grace: float) -> None:
        """Stop these rooms' workers; what they had pending stays in the store."""
        workers = [self.workers.pop(ref) for ref in rooms]
        # one waiting for its room or for a retry stops now; one handing a message to
        # the platform gets the grace period to finish (else that copy may be sent twice)
        await asyncio.gather(*(w.stop(grace if w.sending else 0) for w in workers))

    # -- building the parts --------------------------------------------------------------
    def _platforms(self) -> dict[str, str]:
        return {name: cc.type for name, cc in self.config.connectors.items()}

    def _on_held(self, name: str) -> None:
        connector = self.connectors.get(name)
        if connector is not None:
            connector.ctx.held_signal.set()

    def _build_connector(self, name: str, cc: ConnectorConfig) -> Connector:
        assert self.router is not None
        store = self.stores[cc.party]
        accept = partial(self.router.accept, name)
        if self.cluster is not None:
            accept = partial(_accept_if_held, self.cluster, name, accept)
        ctx = ConnectorContext(
            name=name,
            party=cc.party,
            rooms=self.topology.rooms_of(name),
            inbound_rooms=self.topology.inbound_rooms_of(name),
            accept=accept,
            get_cursor=partial(store.get_cursor, name),
            set_cursor=partial(store.set_cursor, name),
            state_dir=self.config.state_dir(cc.party, name),
            log=logging.getLogger(f"roomlink.connector.{name}"),
            place=partial(self.router.place, name),
            held_after=partial(held_after, store, name),
            release=store.release,
            instance_key=(None if self.config.instance is None
                          else self.config.instance.key.get_secret_value()),
        )
        built: list[Connector] = []  # its own limit caps the files it keeps
        ctx.files = StoreFiles(
            name, cc.party, self.stores, lambda: self.topology,
            lambda: built[0].limits.max_file_bytes if built else None,
        )
        connector = load_connector_type(cc.type)(cc.options, ctx)
        built.append(connector)
        if connector.limits.upstream:
            self.upstream.add(name)
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

    def _add_worker(self, ref: RoomRef) -> RoomWorker:
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
        party = self.topology.party_of[ref]
        worker.files_url = lambda: getattr(self.config.parties.get(party), "files_url", None)
        if self.cluster is not None:
            worker.may_send = partial(self.cluster.owns, ref.connector)
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
            if self.cluster is not None:
                self.cluster.poke_all()

    async def stop(self) -> None:
        """Stop taking input, give in-flight deliveries a grace period, close the stores."""
        await self.reloader.close()
        if self.news is not None:
            await self.news.close()
        if self.cluster is not None:
            await self.cluster.leave()  # the others count this replica out at once
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
            await _stop_connector(name, connector, grace)
        if self.cluster is not None:
            await self.cluster.release_all()  # nothing runs here now: the others take over
        for store in self.stores.values():
            await store.close()
        self.health.uninstall()


async def _accept_if_held(cluster: Cluster, name: str, accept: Accept, inbound: Inbound
                          ) -> list[str]:
    """Input of a connector whose lease this replica may have lost is not taken: the
    platform gives it again to the replica that runs the connector next."""
    if not cluster.may_accept(name):
        raise ShuttingDown(f"connector {name} is moving to another replica")
    return await accept(inbound)


async def _stop_connector(name: str, connector: Connector, grace: float) -> None:
    try:
        await asyncio.wait_for(connector.stop(), max(grace, 1.0))
    except Exception as exc:  # stopping must go on for the others
        log.warning("connector %s did not stop cleanly: %s", name, exc)
