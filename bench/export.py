"""Export benchmark: a store of N messages, exported in every format by the real command.

Fills a fresh SQLite store (or PostgreSQL database) with ``-n`` messages (100,000 by
default) through ``Store.append`` in batches, as the router would, then runs
``roomlink history export --format F -o FILE`` as a child process for each format and
reports its wall time and peak RSS (``ru_maxrss`` of that child, from ``wait4``). Also
times ``history verify`` on the same store. It prints figures; it asserts nothing.

    .venv/bin/python bench/export.py [-n 100000] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import yaml

from roomlink.message.model import Author, Kind, Message
from roomlink.store import NewMessage, open_store

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
WORDS = ("the contract is signed; договор подписан; invoice attached, see the thread "
         "above for details").split()


def message(i: int, start: datetime) -> Message:
    who = ("alice", "agency", "slack") if i % 3 else ("boris", "acme", "telegram")
    kind = Kind.EDIT if i % 50 == 49 else Kind.MESSAGE
    return Message(
        id=uuid.UUID(int=i).hex, pipe="project" if i % 4 else "side", kind=kind,
        origin_connector=f"{who[1]}-{who[2]}", origin_room="#project", origin_native_id=str(i),
        author=Author(name=who[0], id=f"U{i % 7}", party=who[1], platform=who[2]),
        text=" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 20)),
        reply_to=uuid.UUID(int=i - 3).hex if i % 10 == 5 else None,
        target=uuid.UUID(int=i - 1).hex if kind == Kind.EDIT else None,
        ts=start + timedelta(seconds=5 * i),
    )  # fmt: skip


async def fill(url: str, n: int) -> float:
    store = await open_store("agency", url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    try:
        for lo in range(0, n, 500):
            batch = range(lo, min(n, lo + 500))
            await store.append([NewMessage(message(i, start)) for i in batch])
    finally:
        await store.close()
    return time.perf_counter() - t0


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit status) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="roomlink-export-bench-") as tmp:
        work = Path(tmp)
        db_name = f"roomlink_bench_{uuid.uuid4().hex[:8]}"
        if args.store == "sqlite":
            url = f"sqlite:///{work}/agency.db"
        else:
            base = args.pg_url.rsplit("/", 1)[0]
            asyncio.run(_pg(args.pg_url, f'CREATE DATABASE "{db_name}"'))
            url = f"{base}/{db_name}"
        try:
            fill_s = asyncio.run(fill(url, args.n))
            print(f"store: {args.store}, {args.n} messages recorded in {fill_s:.1f} s "
                  f"({args.n / fill_s:.0f} msg/s through Store.append, batches of 500)")
            config = work / "roomlink.yaml"
            config.write_text(yaml.safe_dump({
                "parties": {"agency": {"store": url}},
                "connectors": {"a": {"party": "agency", "type": "api", "listen": "127.0.0.1:1"},
                               "b": {"party": "agency", "type": "api", "listen": "127.0.0.1:2"}},
                "pipes": {"project": {"rooms": [{"connector": "a", "room": "x"},
                                                {"connector": "b", "room": "x"}]}},
            }))  # fmt: skip
            base_cmd = [sys.executable, "-m", "roomlink", "history"]
            print(f"{'command':<32} {'wall':>8} {'msg/s':>9} {'peak RSS':>10} {'output':>10}")
            for fmt in ("jsonl", "text", "html", "mbox"):
                out = work / f"export.{fmt}"
                secs, rss, code = timed([*base_cmd, "export", "-c", str(config), "--party",
                                         "agency", "--format", fmt, "-o", str(out)])
                size = out.stat().st_size / 2**20 if out.exists() else 0
                print(f"{'export --format ' + fmt:<32} {secs:>7.1f}s {args.n / secs:>9.0f} "
                      f"{rss:>7.1f} MiB {size:>6.1f} MiB" + ("" if code == 0 else f" EXIT {code}"))
            secs, rss, code = timed([*base_cmd, "verify", "-c", str(config), "--party", "agency"])
            print(f"{'verify':<32} {secs:>7.1f}s {args.n / secs:>9.0f} {rss:>7.1f} MiB"
                  + ("" if code == 0 else f" EXIT {code}"))
        finally:
            if args.store == "postgresql":
                asyncio.run(_pg(args.pg_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    return 0


async def _pg(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
