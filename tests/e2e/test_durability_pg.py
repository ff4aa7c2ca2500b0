"""kill -9 with PostgreSQL stores: the asyncpg record path and the delivery-mark lane
(with and without ``async_delivery_marks``) lose nothing and double at most one copy per
room per kill, as on SQLite (test_durability.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from rlkit import Daemon, Room, export, free_port, write_config
from store.conftest import pg_database

PARTIES = ("agency", "acme", "contractor")


@pytest.fixture
async def databases() -> AsyncIterator[dict[str, str]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {p: await stack.enter_async_context(pg_database()) for p in PARTIES}


async def test_kill_9_with_postgresql_stores(tmp_path: Path, databases: dict[str, str]) -> None:
    ports = [free_port() for _ in PARTIES]
    config = write_config(tmp_path / "roomlink.yaml", {
        "parties": {
            "agency": {"store": databases["agency"]},
            "acme": {"store": databases["acme"], "async_delivery_marks": True},
            "contractor": {"store": databases["contractor"]},
        },
        "connectors": {
            f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{port}"}
            for p, port in zip(PARTIES, ports, strict=True)
        },
        "pipes": {"project": {"rooms": [{"connector": f"{p}-api", "room": "lobby"}
                                        for p in PARTIES]}},
    })
    total, kill_at = 300, (100, 210)
    daemon = Daemon(config, ports)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            sender, *receivers = (Room(http, port, "lobby") for port in ports)
            streams = [r.stream() for r in receivers]
            for s in streams:
                await s.__aenter__()
            expected: list[str] = []
            for i in range(total):
                if i in kill_at:
                    daemon.kill()
                    await daemon.start()
                expected.append(await sender.post_until_accepted(f"message {i}", "alice",
                                                                 key=f"k{i}"))
            for s in streams:
                await s.wait_for(total, timeout=120)
                await asyncio.sleep(0.3)
                ids = [str(f["id"]) for f in s.frames]
                unique = list(dict.fromkeys(ids))
                assert unique == expected, "a message is missing or out of order"
                assert len(ids) - len(unique) <= len(kill_at), "more than one repeat per kill"
                await s.__aexit__(None, None, None)
            assert daemon.terminate() == 0, daemon.log()
    finally:
        daemon.cleanup()
    for party in PARTIES:
        ids = [r["id"] for r in export(config, party)]
        assert ids == expected, f"{party}'s store does not hold every message exactly once"
