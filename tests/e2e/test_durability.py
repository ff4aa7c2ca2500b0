"""Nothing lost, nothing doubled: kill -9 mid-flow, a room that is down, a failing platform."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import aiohttp

from rlkit import Daemon, Room, export, free_port, plugin_env, running, write_config

PARTIES = ("agency", "acme", "contractor")


def config_for(tmp_path: Path, extra: dict[str, object] | None = None) -> tuple[Path, list[int]]:
    ports = [free_port() for _ in PARTIES]
    config: dict[str, object] = {
        "parties": {p: {"store": f"sqlite:///{p}.db"} for p in PARTIES},
        "connectors": {
            f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{port}"}
            for p, port in zip(PARTIES, ports, strict=True)
        },
        "pipes": {"project": {"rooms": [{"connector": f"{p}-api", "room": "lobby"}
                                        for p in PARTIES]}},
        **(extra or {}),
    }
    return write_config(tmp_path / "roomlink.yaml", config), ports


def check_arrival(frames: list[dict[str, object]], expected: list[str], kills: int) -> None:
    ids = [str(f["id"]) for f in frames]
    unique = list(dict.fromkeys(ids))
    assert unique == expected, "a message is missing or out of order"
    # a copy may come twice only if it was in flight at a kill: at most one per kill
    assert len(ids) - len(unique) <= kills, f"{len(ids) - len(unique)} duplicates"


async def test_kill_9_twice_while_1000_messages_flow(tmp_path: Path) -> None:
    path, ports = config_for(tmp_path)
    total, kill_at = 1000, (300, 650)
    daemon = Daemon(path, ports)
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
                check_arrival(s.frames, expected, kills=len(kill_at))
                await s.__aexit__(None, None, None)
            assert daemon.terminate() == 0, daemon.log()
    finally:
        daemon.cleanup()
    for party in PARTIES:
        ids = [r["id"] for r in export(path, party)]
        assert ids == expected, f"{party}'s store does not hold every message exactly once"


async def test_a_room_that_is_down_blocks_nobody_and_gets_its_backlog(tmp_path: Path) -> None:
    path, ports = config_for(tmp_path)
    async with running(path, ports), aiohttp.ClientSession() as http:
        sender, up, down = (Room(http, port, "lobby") for port in ports)
        async with up.stream() as live:
            ids = [(await sender.post(f"m{i}", "alice"))["id"] for i in range(50)]
            await live.wait_for(50, timeout=10)
            assert [f["id"] for f in live.frames] == ids
            async with down.stream() as late:  # the room comes back: its backlog, in order
                await late.wait_for(50, timeout=10)
                assert [f["id"] for f in late.frames] == ids
                more = (await sender.post("after", "alice"))["id"]
                await late.wait_for(51)
                assert late.frames[-1]["id"] == more


async def test_backlog_survives_a_restart(tmp_path: Path) -> None:
    path, ports = config_for(tmp_path)
    async with running(path, ports) as daemon, aiohttp.ClientSession() as http:
        sender = Room(http, ports[0], "lobby")
        ids = [(await sender.post(f"m{i}", "alice"))["id"] for i in range(20)]
        assert daemon.terminate() == 0
    async with running(path, ports), aiohttp.ClientSession() as http:
        async with Room(http, ports[1], "lobby").stream() as s:
            await s.wait_for(20)
            assert [f["id"] for f in s.frames] == ids


FLAKY_PLUGIN = '''
"""A third-party connector shipped the way any plugin is: an entry point."""
import asyncio
from roomlink.connector.base import Connector, ConnectorOptions, Limits
from roomlink.errors import ConnectorError

class Options(ConnectorOptions):
    log: str

class Flaky(Connector):
    platform = "flaky"
    Options = Options

    async def start(self):
        pass

    async def stop(self):
        pass

    def is_ready(self, room):
        return True

    async def wait_ready(self, room):
        return None

    async def send(self, out):
        if "poison" in out.text:
            raise ConnectorError("platform answered 500")
        with open(self.options.log, "a") as f:
            f.write(out.text + "\\n")
        return out.delivery_key
'''


async def test_a_message_that_keeps_failing_is_marked_failed_and_blocks_nothing(
    tmp_path: Path,
) -> None:
    env = plugin_env(tmp_path, "flaky_plugin", textwrap.dedent(FLAKY_PLUGIN), "flaky")
    sent_log = tmp_path / "flaky.log"
    port, admin = free_port(), free_port()
    config = {
        "parties": {"a": {"store": "sqlite:///a.db"}},
        "connectors": {
            "api": {"party": "a", "type": "api", "listen": f"127.0.0.1:{port}"},
            "flaky": {"party": "a", "type": "flaky", "log": str(sent_log)},
        },
        "pipes": {"p": {"rooms": [{"connector": "api", "room": "r"},
                                  {"connector": "flaky", "room": "x"}]}},
        "delivery": {"max_attempts": 3, "backoff_initial": 0.05, "backoff_max": 0.1},
        "admin": {"listen": f"127.0.0.1:{admin}"},
    }
    path = write_config(tmp_path / "roomlink.yaml", config)
    async with running(path, [port], env) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "r")
        await room.post("first", "alice")
        await room.post("poison pill", "alice")
        await room.post("third", "alice")
        for _ in range(200):
            if sent_log.exists() and sent_log.read_text().count("\n") >= 2:
                break
            await asyncio.sleep(0.05)
        assert sent_log.read_text().splitlines() == ["first", "third"]
        # ops can see it: counted in the metrics and in the health report
        async with http.get(f"http://127.0.0.1:{admin}/metrics") as resp:
            metrics = await resp.text()
        assert 'roomlink_delivery_failures_total{connector="flaky"} 1.0' in metrics
        assert 'roomlink_delivery_retries_total{connector="flaky"} 2.0' in metrics
        assert 'roomlink_deliveries_total{connector="flaky"} 2.0' in metrics
        async with http.get(f"http://127.0.0.1:{admin}/healthz") as resp:
            health = await resp.json()
        assert health["stores"]["a"]["failed"] == 1
        assert health["stores"]["a"]["delivered"] == 2
        assert health["rooms"]["flaky"] == {"x": True}
        assert daemon.terminate() == 0
    log = daemon.log()
    assert "marked failed" in log and "gave up after 3 attempts" in log
