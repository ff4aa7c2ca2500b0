"""The core paces each room as its connector declares, and waits out a platform's 429."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import aiohttp

from rlkit import Room, export, free_port, plugin_env, running, write_config

LIMITED_PLUGIN = '''
"""Says 429 to the first sends of every message, as a busy platform would."""
import json, time
from roomlink.connector.base import Connector, ConnectorOptions, Limits
from roomlink.errors import RateLimited

class Options(ConnectorOptions):
    log: str
    refusals: int

class Limited(Connector):
    platform = "limited"
    Options = Options
    refused: dict = {}

    @property
    def limits(self):
        return Limits(room_rates=((4.0, 1),))

    async def start(self):
        pass

    async def stop(self):
        pass

    def is_ready(self, room):
        return True

    async def wait_ready(self, room):
        return None

    async def send(self, out):
        seen = self.refused.setdefault(out.delivery_key, 0)
        if seen < self.options.refusals:
            self.refused[out.delivery_key] = seen + 1
            raise RateLimited("429 Too Many Requests", retry_after=0.05)
        with open(self.options.log, "a") as f:
            f.write(json.dumps({"room": out.room, "text": out.text, "t": time.monotonic()}) + "\\n")
        return out.delivery_key
'''


async def test_a_rate_limit_delays_without_loss_or_failure_and_rooms_are_paced(
    tmp_path: Path,
) -> None:
    env = plugin_env(tmp_path, "limited_plugin", textwrap.dedent(LIMITED_PLUGIN), "limited")
    sent_log = tmp_path / "sent.jsonl"
    port = free_port()
    config = {
        "parties": {"a": {"store": "sqlite:///a.db"}},
        "connectors": {
            "api": {"party": "a", "type": "api", "listen": f"127.0.0.1:{port}"},
            # more 429s than the retry budget: a rate limit must never spend it
            "slow": {"party": "a", "type": "limited", "log": str(sent_log), "refusals": 5},
        },
        "pipes": {
            "p": {"rooms": [{"connector": "api", "room": "r"}, {"connector": "slow", "room": "x"}]},
            "q": {"rooms": [{"connector": "api", "room": "s"}, {"connector": "slow", "room": "y"}]},
        },
        "delivery": {"max_attempts": 2, "backoff_initial": 0.05, "backoff_max": 0.1},
    }
    path = write_config(tmp_path / "roomlink.yaml", config)
    async with running(path, [port], env) as daemon, aiohttp.ClientSession() as http:
        for i in range(5):
            await Room(http, port, "r").post(f"x{i}", "alice")
            await Room(http, port, "s").post(f"y{i}", "bob")
        for _ in range(400):
            if sent_log.exists() and len(sent_log.read_text().splitlines()) >= 10:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a second copy would show up now
        sent = [json.loads(line) for line in sent_log.read_text().splitlines()]
        assert daemon.terminate() == 0
    for room, prefix in (("x", "x"), ("y", "y")):
        mine = [s for s in sent if s["room"] == room]
        assert [s["text"] for s in mine] == [f"{prefix}{i}" for i in range(5)]
        # 4 per second per room: five sends span at least a second, whatever the 429s did
        assert mine[-1]["t"] - mine[0]["t"] >= 0.9
    assert len(export(path, "a", env=env)) == 10  # each message recorded once
    assert "rate limited" in daemon.log() and "marked failed" not in daemon.log()
