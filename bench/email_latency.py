"""Time from an SMTP delivery to the API stream, through the real roomlink process.

Starts a real Dovecot and the test SMTP server (aiosmtpd -> dovecot-lda, as the email
tests do), a roomlink daemon linking the bridge's mailbox with an API room, then sends N
mails one by one. Each is timed from the moment the SMTP server accepted it (the mail is
in the Maildir then) to the moment its frame arrives on the API room's WebSocket.

    .venv/bin/python bench/email_latency.py            # 20 mails
    .venv/bin/python bench/email_latency.py -n 50 --json

Most of the figure is Dovecot's own notification delay (an IDLE push comes about 0.5 s
after delivery); the rest is FETCH, parsing, both stores' commits and the WebSocket.
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "email")]

from mailpeer import MailServer, new_mail  # noqa: E402
from test_email_relay import bridge_config  # noqa: E402

from rlkit import Daemon, Room  # noqa: E402


async def run(count: int) -> list[float]:
    server = MailServer()
    await server.start()
    daemon: Daemon | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="roomlink-bench-") as tmp:
            path, port = bridge_config(Path(tmp), server, room="alice@test.local")
            daemon = Daemon(path, [port])
            await daemon.start()
            async with aiohttp.ClientSession() as http:
                async with Room(http, port, "lobby").stream() as stream:
                    await asyncio.sleep(1.0)  # the IMAP session is up and idling
                    times = []
                    for i in range(count):
                        await server.send(new_mail("alice@test.local", f"ping {i}", "Alice"))
                        sent = time.perf_counter()
                        await stream.wait_for(i + 1, timeout=30)
                        times.append(time.perf_counter() - sent)
                        await asyncio.sleep(0.2)  # one at a time: latency, not throughput
            assert daemon.terminate() == 0, daemon.log()
            return times
    finally:
        if daemon is not None:
            daemon.cleanup()
        if server.tap is not None:
            await server.tap.stop()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--count", type=int, default=20)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    times = asyncio.run(run(args.count))
    ms = sorted(t * 1000 for t in times)
    figures = {
        "mails": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"SMTP delivery -> API stream over {figures['mails']} mails: "
              f"median {figures['median_ms']} ms, p90 {figures['p90_ms']} ms, "
              f"min {figures['min_ms']} ms, max {figures['max_ms']} ms")


if __name__ == "__main__":
    main()
