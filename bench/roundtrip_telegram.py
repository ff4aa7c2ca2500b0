"""Telegram -> API -> Telegram round trip through the Bot API test server.

Starts the Bot API test server (tests/telegram/server.py) in this process and the real
``roomlink run`` process with two parties: agency's Telegram bot in one group and acme's
API room, linked by one pipe. An API client answers every message it sees in its room
with a message of its own; the figure is the time from a group member's message entering
the server's update queue (so including the bot's long poll) to the server receiving the
bot's ``sendMessage`` carrying the answer: two relay hops, four store commits and two
deliveries. Messages are spaced ``--gap`` seconds apart so that Telegram's pacing, which
the connector declares (about one message a second per chat, 20 a minute per group: one
every 3 s once a burst of 20 is spent), does not enter the figure; with a smaller gap the
p99 shows the pacing.

It prints figures and asserts nothing about time. From the repository root::

    .venv/bin/python bench/roundtrip_telegram.py [-n 30] [--gap 3.1]
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
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "telegram")]

from tgkit import GROUP, BotApiServer, config, env  # noqa: E402

from rlkit import Room, running  # noqa: E402


async def answer_everything(room: Room, stop: asyncio.Event) -> None:
    """The API side: say "re: <text>" to every message that came from Telegram."""
    url = room.base + "/stream"
    async with room.session.ws_connect(url) as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame["author"]["platform"] == "telegram" and frame["kind"] == "message":
                await room.post(f"re: {frame['text']}", "web")
            if stop.is_set():
                break


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="round trips to time")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gap", type=float, default=3.1, help="seconds between messages")
    args = parser.parse_args()

    tg = BotApiServer()
    tg.add_chat(GROUP, "supergroup", "Bench")
    await tg.start()
    arrived: dict[str, float] = {}
    answered = asyncio.Event()

    def on_send(message: dict[str, Any]) -> None:
        arrived.setdefault(message.get("text", "").split("re: ", 1)[-1], time.perf_counter())
        answered.set()

    tg.on_send = on_send
    alice = tg.user("Alice")
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path, port = config(Path(tmp), tg, poll_timeout=30)
        async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
            stop = asyncio.Event()
            responder = asyncio.create_task(answer_everything(Room(http, port, "lobby"), stop))
            await asyncio.sleep(1.0)  # the stream is open and the bot polls
            for i in range(args.warmup + args.n):
                key = f"ping {i}"
                answered.clear()
                started = time.perf_counter()
                tg.say(GROUP, alice, key)
                try:
                    await asyncio.wait_for(answered.wait(), 30)
                except TimeoutError:
                    pass
                if key not in arrived:
                    raise SystemExit(f"{key}: no answer within 30 s\n{daemon.log()[-2000:]}")
                if i >= args.warmup:
                    samples.append((arrived[key] - started) * 1000)
                await asyncio.sleep(max(0.0, args.gap - (time.perf_counter() - started)))
            stop.set()
            responder.cancel()
            assert daemon.terminate() == 0, daemon.log()[-2000:]
    await tg.stop()
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(f"Telegram -> API -> Telegram round trip, {len(samples)} samples "
          f"(after {args.warmup} warm-up), {args.gap}s apart")
    print(f"  median {statistics.median(samples):7.1f} ms")
    print(f"  p99    {p99:7.1f} ms")
    print(f"  min    {samples[0]:7.1f} ms   max {samples[-1]:7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
