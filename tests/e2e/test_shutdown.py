"""SIGTERM waits only for real in-flight work, never for a room nobody is watching."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from rlkit import Daemon, Room, free_port, write_config

GRACE = 5.0  # the default shutdown_grace, written out so that the test says what it waits for


def demo_like_config(tmp_path: Path) -> tuple[Path, list[int]]:
    """The demo's shape: two parties, one API room each, one pipe between them."""
    ports = [free_port(), free_port()]
    config = {
        "parties": {"agency": {"store": "sqlite:///agency.db"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {
            "agency-api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{ports[0]}"},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{ports[1]}"},
        },
        "pipes": {"acme-project": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                             {"connector": "acme-api", "room": "lobby"}]}},
        "delivery": {"shutdown_grace": GRACE},
    }
    return write_config(tmp_path / "demo.yaml", config), ports


async def test_sigterm_with_a_copy_queued_for_an_unwatched_room_exits_at_once(
    tmp_path: Path,
) -> None:
    path, ports = demo_like_config(tmp_path)
    daemon = Daemon(path, ports)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            agency, acme = (Room(http, port, "lobby") for port in ports)
            # nobody watches acme's room: the copy waits for a client there
            sent = await agency.post("hello acme", "alice")
            await asyncio.sleep(0.5)  # let the worker reach the empty room
            began = time.monotonic()
            assert daemon.terminate(timeout=GRACE * 3) == 0, daemon.log()
            took = time.monotonic() - began
        assert took < GRACE / 2, f"SIGTERM took {took:.1f}s with nothing in flight"
        assert "running: 1 pipe, 2 connectors\n" in daemon.log()
        # the queued copy stayed in acme's store and reaches the next start's watcher
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            acme = Room(http, ports[1], "lobby")
            async with acme.stream() as watcher:
                frames = await watcher.wait_for(1, timeout=10)
        assert [(f["id"], f["text"]) for f in frames] == [(sent["id"], "hello acme")]
        assert daemon.terminate() == 0, daemon.log()
    finally:
        daemon.cleanup()
