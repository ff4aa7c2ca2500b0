"""Round trip XMPP room -> API room -> XMPP room through the real daemon and a real Prosody.

An occupant of the room says ``ping N``; a client of the API room answers each frame at
once with ``pong N``; the time is from the occupant's send to the moment the same
occupant receives the bridge's ``<echo> pong N``. It uses the Prosody of the tests
(Debian's package, installed by scripts/test), started here on a free port and stopped
by PID. Messages are ``--gap`` apart so that the pacing the connector declares (5 a
second per room after a burst of 30) stays out of the figure.

    .venv/bin/python bench/xmpp_latency.py [-n 200] [--gap 0.25]
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "xmpp")]

from bridgekit import ROOM  # noqa: E402
from xmppkit import BRIDGE_NICK, Person, Prosody  # noqa: E402

from conformance import wait_until  # noqa: E402
from rlkit import Daemon, Room, free_port, write_config  # noqa: E402


async def main(count: int, warmup: int, gap: float) -> None:
    prosody = Prosody()
    await prosody.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            port = free_port()
            config = write_config(work / "roomlink.yaml", {
                "parties": {p: {"store": f"sqlite:///{work / p}.db"} for p in ("agency", "acme")},
                "connectors": {
                    "chat": {"party": "agency", "type": "xmpp", **prosody.bridge_options()},
                    "web": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{port}"}},
                "pipes": {"p": {"rooms": [{"connector": "chat", "room": ROOM},
                                          {"connector": "web", "room": "lobby"}]}},
            })
            alice = await Person.join(prosody, ROOM, "alice")
            daemon = Daemon(config, [port])
            await daemon.start()
            try:
                async with aiohttp.ClientSession() as http:
                    await run(http, port, alice, count, warmup, gap)
            finally:
                daemon.terminate()
                await alice.leave()
    finally:
        prosody.stop()


async def run(http: aiohttp.ClientSession, port: int, alice: Person, count: int, warmup: int,
              gap: float) -> None:
    muc = alice.plugin["xep_0045"]
    await wait_until(lambda: BRIDGE_NICK in muc.get_roster(ROOM), 30)
    api = Room(http, port, "lobby")

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
        alice.send_message(mto=ROOM, mbody=f"ping {i}", mtype="groupchat")
        await alice.wait_for(lambda s, i=i: s.nick == BRIDGE_NICK and s.body.endswith(
            f"pong {i}"), timeout=30)
        if i >= warmup:
            samples.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(gap)
    echoer.cancel()
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"xmpp -> api -> xmpp round trip, {count} samples: median "
          f"{statistics.median(samples):.1f} ms, p99 {p99:.1f} ms, max {samples[-1]:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.25)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.warmup, args.gap))
