"""What the status page's store counts cost, and how long they hold up the event loop.

Fills a SQLite store with ``-n`` outbox rows (1% failed, the rest delivered), then runs
the status page's store reads (counts, per-room counts, size, latest failures) while a
1 ms ticker on the loop records its longest delay: the time a relay would have waited.
Prints figures; asserts nothing.

    .venv/bin/python bench/status.py -n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from roomlink.message.model import Author, Message, RoomRef, utcnow
from roomlink.store import NewMessage, open_store
from roomlink.store.sqlite import queries as sqlite_queries
from roomlink.store.sqlite.engine import SqliteStore

ROOMS = [RoomRef(f"c{i}", f"r{j}") for i in range(3) for j in range(3)]


async def fill(store: SqliteStore, n: int) -> None:
    author = Author(name="alice", party="p", platform="api")
    batch: list[NewMessage] = []
    done = 0
    while done < n:
        i = len(batch) + done
        m = Message(id=f"m{i}", pipe="main", origin_connector="api", origin_room="lobby",
                    author=author, text=f"message {i}", ts=utcnow())
        batch.append(NewMessage(m, (ROOMS[i % len(ROOMS)],)))
        if len(batch) == 5000 or done + len(batch) == n:
            await store.append(batch)
            done += len(batch)
            batch = []
    # 1% failed, the rest delivered: as after months of running
    store.write_now(lambda c: c.execute(
        "UPDATE outbox SET state = CASE WHEN id % 100 = 0 THEN 'failed' ELSE 'delivered' END, "
        "last_error = CASE WHEN id % 100 = 0 THEN 'refused' END"))


async def _inline(store: SqliteStore) -> dict[str, int]:
    return store.read_now(sqlite_queries.counts)


async def ticker(stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - t - 0.001)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200_000, help="outbox rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store("p", f"sqlite:///{Path(tmp) / 'p.db'}")
        assert isinstance(store, SqliteStore)
        try:
            t = time.perf_counter()
            await fill(store, args.n)
            print(f"filled {args.n} outbox rows in {time.perf_counter() - t:.1f}s")
            cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("counts", lambda: store.counts()),
                ("room_counts", lambda: store.room_counts()),
                ("size", lambda: store.size_bytes()),
                ("latest failures", lambda: store.outbox_entries(
                    state="failed", limit=10, newest_first=True)),
                ("pending heads", lambda: store.pending_heads()),
                # for comparison: the same count on the loop's own connection
                ("counts inline", lambda: _inline(store)),
            ]
            for label, reads in cases:
                stop, worst = asyncio.Event(), [0.0]
                tick = asyncio.create_task(ticker(stop, worst))
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                await reads()
                took = time.perf_counter() - t
                stop.set()
                await tick
                print(f"{label:16} {took * 1000:8.1f} ms   longest loop stall "
                      f"{worst[0] * 1000:6.1f} ms")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
