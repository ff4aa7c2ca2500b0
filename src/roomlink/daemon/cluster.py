"""Replicas (``cluster.enabled``): which connectors this process runs, decided with the
other replicas of the same config through the stores' PostgreSQL databases.

Each connector has a lease in its party's database (``store.postgres.leases``). A
replica renews the leases it holds every tick; one it could not renew for
``STOP_AT`` of ``lease_seconds`` it stops by itself, well before the server lets
another replica take it, so that a replica cut off from its database is quiet before
anyone else speaks for its connectors. The writes of a connector are fenced by the
lease's epoch besides. The replicas spread the connectors evenly: one holding more than
its share hands one over per tick (it stops taking input, its workers finish the copy in
flight, the connector stops, then the lease is released), one holding less takes free
or expired leases. A stop (SIGTERM) leaves the heartbeat table first and releases every
lease once its connectors stopped, so that the others take them over at once.

Appends of one pipe are kept in one order across replicas by an advisory lock in the
database of the pipe's first party (``PipeLocks``), and the replicas hear of each
other's new outbox rows through ``NOTIFY``, so that a room's worker on another replica
delivers them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from roomlink.admin.logs import set_replica
from roomlink.config.models import Config
from roomlink.message.model import RoomRef
from roomlink.relay.delivery import RoomWorker
from roomlink.relay.topology import Topology
from roomlink.store import Store
from roomlink.store.postgres.engine import PostgresStore
from roomlink.store.postgres.leases import Board, Fence

log = logging.getLogger("roomlink.cluster")

CHANNEL = "roomlink_outbox"  # NOTIFY: a pipe's new outbox rows
STOP_AT = 0.6  # of lease_seconds since the last renewal sent: stop the connector
HALT_SHARE = 0.2  # of lease_seconds: the longest a lost connector's sends may finish


def replica_id() -> str:
    """``ROOMLINK_REPLICA_ID``, else the host's name and this process's id."""
    return os.environ.get("ROOMLINK_REPLICA_ID") or f"{socket.gethostname()}-{os.getpid()}"


class ClusterParts(Protocol):
    """The daemon as the cluster sees it: what runs, and how to run or halt a connector."""

    @property
    def config(self) -> Config: ...
    @property
    def topology(self) -> Topology: ...
    @property
    def stores(self) -> Mapping[str, Store]: ...
    @property
    def workers(self) -> Mapping[RoomRef, RoomWorker]: ...

    async def run_connector(self, name: str) -> None:
        """Build and start the connector and its rooms' workers; raises when it cannot."""
        ...

    async def halt_connector(self, name: str, grace: float) -> None:
        """Stop the connector's workers (a copy in flight gets ``grace``), then it."""
        ...


@dataclass
class _Held:
    epoch: int
    valid_until: float  # monotonic: stop the connector by then unless renewed


class Cluster:
    def __init__(self, parts: ClusterParts, replica: str | None = None) -> None:
        self.parts = parts
        self.id = replica or replica_id()
        self.fence = Fence(self.id)
        self.held: dict[str, _Held] = {}
        self._boards: dict[str, Board] = {}  # store URL -> leases, heartbeats, LISTEN
        self._locks: dict[str, Board] = {}  # store URL -> the pipes' append locks
        self.pipe_lock = PipeLocks(self)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._cooldown: dict[str, float] = {}  # connector -> no new try before (monotonic)
        self._leaving: set[str] = set()  # being handed over: no new input

    # -- settings, read from the running config (a reload may change them) --------------
    @property
    def seconds(self) -> float:
        return self.parts.config.cluster.lease_seconds

    @property
    def tick(self) -> float:
        return min(1.0, self.seconds / 5)

    def _url(self, party: str) -> str:
        return self.parts.config.parties[party].store

    def board(self, party: str, locks: bool = False) -> Board:
        url = self._url(party)
        boards = self._locks if locks else self._boards
        board = boards.get(url)
        if board is None:
            # the pipe locks wait for other replicas: on a connection of their own, so that
            # renewals never wait behind them
            board = boards[url] = Board(url, timeout=max(1.0, self.seconds * 0.3))
        return board

    def owns(self, connector: str) -> bool:
        """Whether this replica may take input and deliver for ``connector`` now."""
        held = self.held.get(connector)
        return held is not None and time.monotonic() < held.valid_until

    def may_accept(self, connector: str) -> bool:
        """Whether the connector's input is taken here: not once it is being handed over
        (the platform gives it again, or the client retries, to the next owner)."""
        return self.owns(connector) and connector not in self._leaving

    def connectors(self) -> list[str]:
        return sorted(self.held)

    # -- start and stop ------------------------------------------------------------------
    async def open(self) -> None:
        """Share every store, and listen for other replicas' new outbox rows."""
        set_replica(self.id)
        self.fence.guarded = set(self.parts.config.connectors)
        await self.attach()
        log.info("replica %s: connectors are spread among the replicas by leases of %gs",
                 self.id, self.seconds)

    async def attach(self) -> None:
        """Share every store and listen on every party's database (again after a reload:
        a new party's store and database)."""
        for store in self.parts.stores.values():
            if isinstance(store, PostgresStore):
                store.share(self.fence)
        for party in sorted(self.parts.config.parties):
            board = self.board(party)
            if not board.listens(CHANNEL):
                await board.listen(CHANNEL, self._heard)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="cluster leases")

    async def leave(self) -> None:
        """Stop taking connectors, and tell the others this replica goes."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._coordinator().leave(self.id)

    async def release_all(self) -> None:
        """After the connectors stopped: every lease goes, for another replica at once."""
        for name in list(self.held):
            await self._release(name)
        for board in (*self._boards.values(), *self._locks.values()):
            await board.close()

    # -- the loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database away: leases run out, the next try
                log.warning("replica %s: cannot reach the cluster's database: %s",
                            self.id, str(exc) or type(exc).__name__)
            await self._drop_expired()
            await asyncio.sleep(self.tick)

    async def _round(self) -> None:
        await self._renew()
        await self._drop_expired()
        config = self.parts.config
        names = list(config.connectors)
        self.fence.guarded = set(names)
        live = await self._coordinator().heartbeat(self.id, self.seconds)
        share = math.ceil(len(names) / max(live, 1))
        for name in list(self.held):  # removed by a reload: nothing to run any more
            if name not in config.connectors:
                await self._hand_over(name)
        if len(self.held) > share:
            # the newest first: a replica that just joined takes one per tick
            await self._hand_over(list(self.held)[-1])
            return
        if len(self.held) >= share:
            return
        now = time.monotonic()
        free: list[str] = []
        for party in sorted({config.connectors[n].party for n in names}):
            mine = [n for n in names if config.connectors[n].party == party]
            leases = await self.board(party).leases(mine)
            free += [n for n in mine if n not in self.held and self._cooldown.get(n, 0) <= now
                     and (n not in leases or not leases[n].live or leases[n].owner is None)]
        random.shuffle(free)  # replicas starting together try different ones first
        for name in free[: share - len(self.held)]:
            await self._take(name)

    def _coordinator(self) -> Board:
        """The database of the first party (by name): the replicas' heartbeats."""
        return self.board(sorted(self.parts.config.parties)[0])

    async def _renew(self) -> None:
        config = self.parts.config
        by_party: dict[str, dict[str, int]] = {}
        for name, held in self.held.items():
            by_party.setdefault(config.connectors[name].party, {})[name] = held.epoch
        for party, held_here in by_party.items():
            sent = time.monotonic()
            kept = await self.board(party).renew(self.id, held_here, self.seconds)
            for name in held_here:
                if name in kept and name in self.held:
                    self.held[name].valid_until = sent + STOP_AT * self.seconds
                elif name in self.held:
                    log.error("replica %s lost the lease of connector %s; stopping it",
                              self.id, name)
                    await self._lose(name)

    async def _drop_expired(self) -> None:
        now = time.monotonic()
        for name in [n for n, h in self.held.items() if h.valid_until <= now]:
            log.error("replica %s could not renew the lease of connector %s in time; "
                      "stopping it", self.id, name)
            await self._lose(name)

    async def _take(self, name: str) -> None:
        party = self.parts.config.connectors[name].party
        sent = time.monotonic()
        epoch = await self.board(party).acquire(name, self.id, self.seconds)
        if epoch is None:
            return  # another replica was quicker
        self.held[name] = _Held(epoch, sent + STOP_AT * self.seconds)
        self.fence.epochs[name] = epoch
        try:
            await self.parts.run_connector(name)
        except Exception as exc:
            log.error("replica %s: connector %s could not start: %s", self.id, name, exc)
            self._cooldown[name] = time.monotonic() + self.seconds
            await self._halt(name)
            await self._release(name)
            return
        log.info("replica %s runs connector %s (lease epoch %d)", self.id, name, epoch)

    async def _halt(self, name: str) -> None:
        grace = min(self.parts.config.delivery.shutdown_grace, HALT_SHARE * self.seconds)
        try:
            await self.parts.halt_connector(name, grace)
        except Exception as exc:  # it must stop here whatever happened
            log.error("replica %s: stopping connector %s: %s", self.id, name, exc)

    async def _hand_over(self, name: str) -> None:
        """Stop the connector here, its copies in flight finished, then free its lease."""
        log.info("replica %s hands connector %s over", self.id, name)
        self._leaving.add(name)
        try:
            await self._halt(name)
        finally:
            self._leaving.discard(name)
        self._cooldown[name] = time.monotonic() + 3 * self.tick  # let another take it
        await self._release(name)

    async def _lose(self, name: str) -> None:
        held = self.held.pop(name, None)  # owns() is False from here: workers stop
        await self._halt(name)
        if held is not None and self.fence.epochs.get(name) == held.epoch:
            del self.fence.epochs[name]

    async def _release(self, name: str) -> None:
        held = self.held.pop(name, None)
        self.fence.epochs.pop(name, None)
        if held is None or name not in self.parts.config.connectors:
            return
        party = self.parts.config.connectors[name].party
        try:
            await self.board(party).release(name, self.id, held.epoch)
        except Exception as exc:  # it runs out by itself
            log.warning("replica %s could not release connector %s: %s", self.id, name, exc)

    # -- other replicas' outbox rows -------------------------------------------------------
    def _heard(self, _conn: Any, pid: int, _channel: str, pipe: str) -> None:
        if pid in {b.pid for b in self._locks.values()}:
            return  # this replica's own append: its workers were handed the rows
        try:
            rooms = {r.ref for r in self.parts.topology.pipe(pipe).rooms}
        except KeyError:
            return
        for ref, worker in list(self.parts.workers.items()):
            if ref in rooms:
                worker.poke()

    def poke_all(self) -> None:
        """A NOTIFY may be lost (a reconnect): every worker looks in its store."""
        for worker in list(self.parts.workers.values()):
            worker.poke()

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "connectors": self.connectors()}


class PipeLocks:
    """Appends of one pipe, one replica at a time: an advisory lock in the database of
    the pipe's first party, held while the batch goes into every party's store, and the
    others told of the new rows as it is let go."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @contextlib.asynccontextmanager
    async def hold(self, pipes: Sequence[str]) -> AsyncIterator[None]:
        topology = self.cluster.parts.topology
        by_board: dict[str, tuple[Board, list[str]]] = {}
        for name in pipes:
            board = self.cluster.board(topology.pipe(name).parties[0], locks=True)
            by_board.setdefault(board.url, (board, []))[1].append(name)
        held: list[tuple[Board, list[str]]] = []
        try:
            for url in sorted(by_board):  # one order: two replicas never wait on each other
                board, names = by_board[url]
                await board.lock_pipes(names)
                held.append((board, names))
            yield
        finally:
            for board, names in held:
                try:
                    lost = await board.unlock_pipes(names, CHANNEL)
                except Exception as exc:  # a lost connection let the locks go already
                    lost = names
                    log.warning("replica %s: pipe locks: %s", self.cluster.id, exc)
                if lost:  # another replica may have written meanwhile (relay.align)
                    log.warning("replica %s lost the lock of pipe %s during a batch",
                                self.cluster.id, ", ".join(lost), extra={"pipe": ", ".join(lost)})
