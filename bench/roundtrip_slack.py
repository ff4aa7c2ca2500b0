"""Slack -> API -> Slack round trip through the local Slack server.

Starts the Slack test server (tests/slack/server.py: Web API + Socket Mode) in this
process and the real ``roomlink run`` process with two parties: agency's Slack app in
``#acme-project`` and acme's API room, linked by one pipe. An API client answers every
message it sees in its room with a message of its own; the figure is the time from a
Slack user's message being handed to the Socket Mode connection to the server receiving
the bridge's ``chat.postMessage`` carrying the answer: two relay hops (with an ack after
the store commit), four store commits and two deliveries. Messages are spaced ``--gap``
seconds apart so that the pacing the connector declares (one post a second per channel,
bursts of 3) does not enter the figure; with a smaller gap the p99 shows the pacing.

It prints figures and asserts nothing about time. From the repository root::

    .venv/bin/python bench/roundtrip_slack.py [-n 50] [--gap 1.1]
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "slack")]

from slackkit import ALICE, LOBBY, bridge_config, slack_server  # noqa: E402

from rlkit import Room, running  # noqa: E402


async def answer_everything(room: Room) -> None:
    """The API side: say "re: <text>" to every message that came from Slack."""
    async with room.session.ws_connect(room.base + "/stream") as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame["author"]["platform"] == "slack" and frame["kind"] == "message":
                await room.post(f"re: {frame['text']}", "web")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="round trips to time")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gap", type=float, default=1.1, help="seconds between messages")
    args = parser.parse_args()

    samples: list[float] = []
    async with slack_server() as slack:
        slack.add_user(ALICE, "alice", display_name="Alice")
        slack.add_channel(LOBBY, "acme-project")
        with tempfile.TemporaryDirectory() as tmp:
            path, port = bridge_config(Path(tmp), slack)
            async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
                responder = asyncio.create_task(answer_everything(Room(http, port, "lobby")))
                await slack.wait(lambda: slack.connections > 0, what="Socket Mode")
                await asyncio.sleep(0.5)
                for i in range(args.warmup + args.n):
                    want = f"re: ping {i}"
                    started = time.perf_counter()
                    slack.say(LOBBY, ALICE, f"ping {i}")
                    await slack.wait(lambda w=want: any(
                        m["text"] == w for m in slack.history(LOBBY)[-3:]), 30, want)
                    if i >= args.warmup:
                        samples.append((time.perf_counter() - started) * 1000)
                    await asyncio.sleep(max(0.0, args.gap - (time.perf_counter() - started)))
                responder.cancel()
                assert daemon.terminate() == 0, daemon.log()[-2000:]
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(f"Slack -> API -> Slack round trip, {len(samples)} samples "
          f"(after {args.warmup} warm-up), {args.gap}s apart")
    print(f"  median {statistics.median(samples):7.1f} ms")
    print(f"  p99    {p99:7.1f} ms")
    print(f"  min    {samples[0]:7.1f} ms   max {samples[-1]:7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
