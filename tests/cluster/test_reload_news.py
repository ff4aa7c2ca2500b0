"""The reload news between replicas (``daemon.cluster_reload``) in one process, on a real
PostgreSQL database: heard through NOTIFY, caught up from the heartbeat rows when the
NOTIFY was missed, each reload dealt with once, none when the config is the same."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from replicakit import wait_until
from roomlink.admin.reload import Heard, ReloadResult
from roomlink.daemon import cluster_reload
from roomlink.daemon.cluster_reload import ReloadNews
from roomlink.store.postgres.leases import Board
from store.conftest import pg_database


class _Replica:
    """A replica as the news see it: its id, its board, its running config's SHA-256,
    and the reloads it was asked for (which apply ``next_sha``, what its file holds)."""

    def __init__(self, name: str, url: str, sha: str) -> None:
        self.id = name
        self._board = Board(url, timeout=5.0)
        self.config = SimpleNamespace(parties={"agency": None}, sha256=sha)
        self.next_sha = sha
        self.heard: list[Heard | None] = []
        self.news = ReloadNews(self, self, self)

    def board(self, party: str) -> Board:
        return self._board

    async def attach(self) -> None:
        pass

    async def reload(self, heard: Heard | None = None) -> ReloadResult:
        if heard is not None and heard.sha256 == self.config.sha256:
            return ReloadResult(True)  # as Reloader: the same config runs already
        self.heard.append(heard)
        self.config.sha256 = self.next_sha
        return ReloadResult(True)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg_database() as found:
        yield found


@contextlib.asynccontextmanager
async def _opened(*replicas: _Replica) -> AsyncIterator[None]:
    try:
        for replica in replicas:
            await replica.news.open()
        yield
    finally:
        for replica in replicas:
            await replica.news.close()
            await replica._board.close()


async def test_heard_once_and_not_when_the_same(url: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(cluster_reload, "CATCH_UP", 0.3)
    a, b, c = (_Replica(n, url, "old") for n in ("a", "b", "c"))
    async with _opened(a, b, c):
        a.config.sha256 = "new"  # a applied a reload the operator asked for
        c.config.sha256 = c.next_sha = "new"  # c had its SIGHUP as well
        b.next_sha = "new"
        await a.news.announce()

        async def b_reloaded() -> bool:
            return bool(b.heard)
        await wait_until(b_reloaded, "b reloads after a's")
        await asyncio.sleep(1.5)  # several catch-up rounds: nothing more
        assert b.heard == [Heard("a", "new")]
        assert c.heard == [] and a.heard == []
        assert b.config.sha256 == "new"


async def test_a_missed_notify_is_caught_up_from_the_heartbeat_rows(
        url: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(cluster_reload, "CATCH_UP", 0.3)
    a, b = _Replica("a", url, "old"), _Replica("b", url, "old")

    async def deaf() -> None:  # b's LISTEN connection was down when a told the others
        pass
    monkeypatch.setattr(b.news, "listen", deaf)
    async with _opened(a, b):
        a.config.sha256 = b.next_sha = "new"
        await a.news.announce()

        async def b_reloaded() -> bool:
            return bool(b.heard)
        await wait_until(b_reloaded, "b catches up with a's reload")
        # a file that differs still gets one reload per reload noted, not one per round
        b.next_sha = "late"
        a.config.sha256 = "newer"
        await a.news.announce()
        await wait_until(lambda: _count(b, 2), "b catches up with a's second reload")
        await asyncio.sleep(1.5)
        assert b.heard == [Heard("a", "new"), Heard("a", "newer")]
        assert b.config.sha256 == "late"
    # a replica starting after a reload was noted: its file has it, nothing to do
    late = _Replica("late", url, "newer")
    async with _opened(late):
        await asyncio.sleep(1.0)
        assert late.heard == []


async def _count(replica: _Replica, count: int) -> bool:
    return len(replica.heard) >= count
