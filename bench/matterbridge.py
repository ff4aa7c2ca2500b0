"""The same hop through Matterbridge, for issue 13's comparison: relay.py's phases, its
client and its timing, against a Matterbridge binary you built yourself.

Matterbridge (github.com/42wim/matterbridge, Go) is not installed by this project and
none of its code is here: pass the path of a binary with its API bridge (``--bin``). The
script writes a config with two API bridges joined by one gateway, starts the binary,
reads the second bridge's ``/api/websocket`` (the same kind of stream as roomlink's
room stream; ``/api/stream`` sleeps 100-200 ms after every message, by version) and
posts into the first bridge's ``/api/message``. Then, as in relay.py: hop latency one
message at a time, then ``-n`` messages from ``--concurrency`` keep-alive posters
("burst": ``n`` / first POST -> last frame), every text counted on arrival, and the
process's peak RSS.

Matterbridge stores nothing and answers a POST as soon as its gateway has taken the
message, so these figures are a bridge without durability.
``.venv/bin/python bench/matterbridge.py --bin /path/to/matterbridge [-n 5000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from relay import (
    RawPoster,
    StreamReader,
    free_port,
    latency_phase,
    ms,
    pct,
    proc_status_kb,
    throughput_phase,
    wait_port,
)

CONFIG = """\
[api.one]
BindAddress="127.0.0.1:{one}"
Buffer=1000
RemoteNickFormat="{{NICK}}"

[api.two]
BindAddress="127.0.0.1:{two}"
Buffer=1000
RemoteNickFormat="{{NICK}}"

[[gateway]]
name="gw"
enable=true

[[gateway.inout]]
account="api.one"
channel="api"

[[gateway.inout]]
account="api.two"
channel="api"
"""


class MatterbridgePoster(RawPoster):
    """POST /api/message: answered 200 with the message, which carries no id."""

    status = "200"

    def body(self, text: str) -> dict[str, Any]:
        return {"text": text, "username": "bench", "gateway": "gw"}

    def answer_id(self, answer: dict[str, Any], text: str) -> str:
        return text


class MatterbridgeReader(StreamReader):
    """/api/websocket: JSON messages; the first is an ``api_connected`` event."""

    def key(self, frame: dict[str, Any]) -> tuple[str, str] | None:
        if frame.get("event"):
            return None
        text = str(frame["text"])
        return text, text  # API messages have no id: the bench's texts are unique


async def run(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="matterbridge-bench-") as tmp:
        one, two = free_port(), free_port()
        conf = Path(tmp) / "matterbridge.toml"
        conf.write_text(CONFIG.format(one=one, two=two))
        with (Path(tmp) / "log").open("wb") as log:
            proc = subprocess.Popen([args.bin, "-conf", str(conf)], stdout=log, stderr=log,
                                    cwd=tmp)
        try:
            t0 = time.perf_counter()
            for port in (one, two):
                await wait_port(port, proc)
            result.update(startup=time.perf_counter() - t0,
                          rss_start=proc_status_kb(proc.pid, "VmRSS") / 1024)
            print(f"  matterbridge      pid {proc.pid}, listening in {result['startup']:.2f} s;"
                  f" RSS at start {result['rss_start']:.1f} MiB")
            post_url = f"http://127.0.0.1:{one}/api/message"
            async with aiohttp.ClientSession() as session:
                reader = MatterbridgeReader(session, f"http://127.0.0.1:{two}/api/websocket")
                await reader.start()
                poster = MatterbridgePoster(post_url)
                lat = await latency_phase(poster, reader, args.latency, args.warmup, proc.pid)
                await poster.close()
                hop = statistics.median(lat.hop)
                result.update(hop_median=hop, hop_p99=pct(lat.hop, .99),
                              serial_cpu=lat.daemon_cpu / len(lat.hop))
                print(f"\n== latency: {len(lat.hop)} messages, one at a time")
                print(f"  hop   median {ms(hop)}   p90 {ms(pct(lat.hop, .9))}"
                      f"   p99 {ms(pct(lat.hop, .99))}   max {ms(max(lat.hop))}")
                tp = await throughput_phase(post_url, "raw", reader, args.n, args.concurrency,
                                            proc.pid, args.timeout, MatterbridgePoster)
                await reader.stop()
            ok = tp.received == tp.n and not tp.duplicates and not tp.missing
            result.update(sustained=tp.n / tp.wall, accepted=tp.n / tp.post_wall,
                          tp_cpu=tp.daemon_cpu / tp.n, received=tp.received, ok=ok,
                          peak_rss=proc_status_kb(proc.pid, "VmHWM") / 1024)
            print(f"\n== burst: {tp.n} messages, {args.concurrency} concurrent posters")
            print(f"  burst             {tp.n / tp.wall:.0f} msg/s"
                  f"  (first POST -> last frame: {tp.wall:.2f} s)")
            print(f"  arrived once      {tp.received}/{tp.n}; duplicates {tp.duplicates},"
                  f" missing {tp.missing}  -> {'OK' if ok else 'MESSAGES LOST'}")
            print(f"  CPU               {tp.daemon_cpu / tp.n * 1e3:.3f} ms/msg")
            print(f"  peak RSS (VmHWM)  {result['peak_rss']:.1f} MiB")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--bin", required=True, help="the matterbridge binary")
    p.add_argument("-n", type=int, default=5000, help="messages in the burst")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent posters")
    p.add_argument("--latency", type=int, default=1000, help="latency samples")
    p.add_argument("--warmup", type=int, default=200, help="latency warm-up messages")
    p.add_argument("--timeout", type=float, default=60, help="max wait for the last frame (s)")
    p.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    args = p.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    return 0  # a lost message is a figure here (Matterbridge's), not the script's failure


if __name__ == "__main__":
    sys.exit(main())
