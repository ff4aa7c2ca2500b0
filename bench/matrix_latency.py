"""Round trip Matrix room -> API room -> Matrix room through the real daemon and a real Synapse.

A Matrix user says ``ping N``; a client of the API room answers each frame at once with
``pong N``; the time is from the Matrix send to the moment the Matrix user's own /sync
shows the bridge's ``pong N``. It uses the Synapse of the tests (``.venv-synapse``,
installed by scripts/test), started here on a free port and stopped by PID.

    .venv/bin/python bench/matrix_latency.py [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "matrix")]

from synapsekit import Synapse, User, register  # noqa: E402

from rlkit import Daemon, Room, free_port, write_config  # noqa: E402


async def sync_loop(user: User, room: str, bot: str, seen: dict[str, float],
                    arrived: asyncio.Event) -> None:
    since = None
    while True:
        params = {"timeout": "5000", "filter": '{"room":{"timeline":{"limit":1000}}}'}
        if since:
            params["since"] = since
        data = await user.call("GET", "/sync", **params)
        since = data["next_batch"]
        now = time.perf_counter()
        timeline = data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
        for event in timeline.get("events", []):
            if event["sender"] == bot and event["type"] == "m.room.message":
                word = event["content"]["body"].rsplit(" ", 2)[-2:]
                if word[0] == "pong":
                    seen.setdefault(word[1], now)
                    arrived.set()


async def main(count: int, warmup: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synapse = Synapse(work / "synapse")
        synapse.start()
        try:
            async with aiohttp.ClientSession() as http:
                owner = await register(http, synapse.url, "owner")
                bot = await register(http, synapse.url, "bridge")
                alice = await register(http, synapse.url, "alice")
                room = await owner.create_room([bot.user_id])
                await alice.join(room)
                port = free_port()
                config = write_config(work / "roomlink.yaml", {
                    "parties": {p: {"store": f"sqlite:///{work / p}.db"}
                                for p in ("agency", "acme")},
                    "connectors": {
                        "mx": {"party": "agency", "type": "matrix",
                               "homeserver": synapse.url, "user_id": bot.user_id,
                               "access_token": bot.token, "key_store": str(work / "keys")},
                        "web": {"party": "acme", "type": "api",
                                "listen": f"127.0.0.1:{port}"}},
                    "pipes": {"p": {"rooms": [{"connector": "mx", "room": room},
                                              {"connector": "web", "room": "lobby"}]}},
                })
                daemon = Daemon(config, [port])
                await daemon.start()
                try:
                    await run(http, port, owner, alice, bot, room, count, warmup)
                finally:
                    daemon.terminate()
        finally:
            synapse.stop()


async def run(http: aiohttp.ClientSession, port: int, owner: User, alice: User, bot: User,
              room: str, count: int, warmup: int) -> None:
    for _ in range(300):  # the bot accepts its invite
        state = await owner.call("GET", f"/rooms/{room}/state")
        if any(e["type"] == "m.room.member" and e["state_key"] == bot.user_id
               and e["content"]["membership"] == "join" for e in state):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    api = Room(http, port, "lobby")
    seen: dict[str, float] = {}
    arrived = asyncio.Event()
    watcher = asyncio.create_task(sync_loop(alice, room, bot.user_id, seen, arrived))

    async def echo() -> None:
        async with http.ws_connect(f"{api.base}/stream", headers=api.headers) as ws:
            async for msg in ws:
                frame = json.loads(msg.data)
                await api.post(frame["text"].replace("ping", "pong"), "echo")

    echoer = asyncio.create_task(echo())
    await asyncio.sleep(0.5)
    samples: list[float] = []
    for i in range(warmup + count):
        start = time.perf_counter()
        await alice.send(room, {"msgtype": "m.text", "body": f"ping {i}"})
        while str(i) not in seen:
            await arrived.wait()
            arrived.clear()
        if i >= warmup:
            samples.append((seen[str(i)] - start) * 1000)
    watcher.cancel()
    echoer.cancel()
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"matrix -> api -> matrix round trip, {count} samples: median "
          f"{statistics.median(samples):.1f} ms, p99 {p99:.1f} ms, max {samples[-1]:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.warmup))
