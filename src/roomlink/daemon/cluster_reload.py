"""Replicas: a live reload sent to one replica reaches every replica.

When a reload the operator asked of this replica (SIGHUP, ``roomlink reload``,
``POST /api/reload``) was applied, the replica notes the SHA-256 of the config file it
read in its heartbeat row and tells the others with a ``NOTIFY`` on ``roomlink_reload``
in every party's database (a JSON payload: its id, that SHA-256 and when, on the
coordinating database's clock). Another replica hearing it reloads its own config file
(its own path, its own environment), unless it runs a config with that SHA-256 already
(so a replica that got the SIGHUP as well does nothing, and a reload heard never
starts another: only the operator's are told). A file that differs is applied all the
same, with one warning: a ConfigMap may reach some replicas later.

A ``NOTIFY`` is lost while a replica's connection is down; every few seconds each
replica looks at the reloads the others noted in their heartbeat rows and deals with
one it has not heard of the same way. Each reload noted is dealt with once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

from roomlink.admin.reload import Heard, ReloadResult
from roomlink.config.models import Config
from roomlink.store.postgres.leases import Board

log = logging.getLogger("roomlink.cluster")

RELOAD_CHANNEL = "roomlink_reload"  # NOTIFY: a replica applied a reload
CATCH_UP = 3.0  # seconds: how often the heartbeat rows are read for a reload not heard of


class ReplicaBoards(Protocol):
    """The cluster as the reload news see it."""

    @property
    def id(self) -> str: ...

    def board(self, party: str) -> Board: ...

    async def attach(self) -> None:
        """Share every store and listen on every party's database (after a reload)."""
        ...


class Running(Protocol):
    @property
    def config(self) -> Config: ...


class Reloading(Protocol):
    """``admin.reload.Reloader``: one reload at a time, none when the config is the same."""

    async def reload(self, heard: Heard | None = None) -> ReloadResult: ...


class ReloadNews:
    def __init__(self, cluster: ReplicaBoards, running: Running, reloader: Reloading) -> None:
        self.cluster = cluster
        self.running = running
        self.reloader = reloader
        self.handled = 0  # µs, the coordinating server's clock: the newest reload dealt with
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def _coordinator(self) -> Board:
        """The database of the first party (by name), as ``Cluster``'s heartbeats."""
        return self.cluster.board(sorted(self.running.config.parties)[0])

    async def open(self) -> None:
        """Listen; what other replicas reloaded before this one started is in its file."""
        await self.listen()
        with contextlib.suppress(Exception):  # none noted yet, or the database away
            self.handled = max((at for _, _, at in await self._coordinator().reloads()),
                               default=0)
        self._task = asyncio.create_task(self._run(), name="cluster reloads")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def listen(self) -> None:
        for party in sorted(self.running.config.parties):
            board = self.cluster.board(party)
            if not board.listens(RELOAD_CHANNEL):
                await board.listen(RELOAD_CHANNEL, self._heard)

    async def settle(self) -> None:
        """After a reload: a new party's store is shared and its database listened on."""
        try:
            await self.cluster.attach()
            await self.listen()
        except Exception as exc:  # listeners are kept: they come with the next connection
            log.warning("replica %s: after the reload: %s", self.cluster.id,
                        str(exc) or type(exc).__name__)

    async def announce(self) -> None:
        """This replica applied a reload the operator asked for: tell the others."""
        await self.settle()
        config = self.running.config
        try:
            at = await self._coordinator().note_reload(self.cluster.id, config.sha256)
            self.handled = max(self.handled, at)
            payload = json.dumps({"replica": self.cluster.id, "sha256": config.sha256,
                                  "at": at})
            boards = {b.url: b for b in map(self.cluster.board, sorted(config.parties))}
            for board in boards.values():
                await board.notify(RELOAD_CHANNEL, payload)
        except Exception as exc:  # they learn of it from the heartbeat rows, or not
            log.warning("replica %s could not tell the other replicas of its reload: %s",
                        self.cluster.id, str(exc) or type(exc).__name__)
            return
        log.info("replica %s told the other replicas of its reload (config %s)",
                 self.cluster.id, config.sha256[:12])

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            news = json.loads(payload)
            item = (str(news["replica"]), str(news["sha256"]), int(news["at"]))
        except (ValueError, KeyError, TypeError):
            log.warning("replica %s: a reload notice it cannot read: %.200s",
                        self.cluster.id, payload)
            return
        if item[0] != self.cluster.id:
            self._queue.put_nowait(item)

    async def _missed(self) -> list[tuple[str, str, int]]:
        try:
            rows = await self._coordinator().reloads()
        except Exception:  # the cluster's loop says when the database is away
            return []
        return sorted((r for r in rows if r[0] != self.cluster.id), key=lambda r: r[2])

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(CATCH_UP):
                    news = [await self._queue.get()]
            except TimeoutError:
                news = await self._missed()
            for replica, sha256, at in news:
                if at <= self.handled:
                    continue  # heard on another database, or already dealt with
                self.handled = at
                try:
                    result = await self.reloader.reload(Heard(replica, sha256))
                except Exception as exc:  # logged; the running config stays
                    log.error("replica %s: reload after replica %s's failed: %s",
                              self.cluster.id, replica, exc)
                    continue
                if result.ok:
                    await self.settle()
