"""Chat into an email room: how fast the bridge mails a burst out, through the real process.

Starts a real Dovecot and the test SMTP server (aiosmtpd -> dovecot-lda, as the email
tests do), a roomlink daemon linking an API room with the email room of one recipient,
then posts N chat messages at once and times until all N mails are in the recipient's
Maildir. It also counts the SMTP connections the bridge opened for them.

    .venv/bin/python bench/email_send.py               # 100 mails, plain SMTP
    .venv/bin/python bench/email_send.py --starttls    # the same over STARTTLS
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "email")]

from mailpeer import MailServer  # noqa: E402
from test_email_relay import bridge_config  # noqa: E402

from rlkit import Room, running  # noqa: E402

RECIPIENT = "alice@test.local"


async def run(count: int, starttls: bool) -> None:
    server = MailServer(tls=starttls)
    await server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="roomlink-bench-") as tmp:
            extra = {"tls_verify": False,
                     "smtp": {"host": "127.0.0.1", "port": server.smtp_port,
                              "security": "starttls"}} if starttls else {}
            path, port = bridge_config(Path(tmp), server, room=RECIPIENT, **extra)
            async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
                room = Room(http, port, "lobby")
                await room.post("warm-up", "bob")
                await server.wait_mails("alice", 1)
                before = server.smtp_connections()
                started = time.perf_counter()
                for i in range(count):
                    await room.post(f"mail {i}", "bob")
                await server.wait_mails("alice", count + 1, timeout=600)
                wall = time.perf_counter() - started
                opened = server.smtp_connections() - before
                print(f"{count} mails ({'STARTTLS' if starttls else 'plain SMTP'}) in "
                      f"{wall:.2f} s = {count / wall:.1f} mails/s; SMTP connections opened "
                      f"for them: {opened}")
                daemon.terminate()
    finally:
        if server.tap is not None:
            await server.tap.stop()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=100, help="chat messages, so mails")
    p.add_argument("--starttls", action="store_true", help="SMTP with STARTTLS")
    args = p.parse_args()
    asyncio.run(run(args.n, args.starttls))


if __name__ == "__main__":
    main()
