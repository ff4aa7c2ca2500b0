"""Retention: a party's ``retention_days`` removes its oldest records, keeping an anchor.

Per pipe, the cut takes the longest prefix (in record order) of messages recorded before
the cutoff that have no pending delivery, after checking their chain; it removes them with
their delivered and failed outbox rows, and stores the anchor (pipe, count, head at the
cut) from which ``verify`` and ``digest`` go on. A prefix that does not verify is left
alone (cutting it would launder the tampering into an anchor) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from roomlink.message.model import utcnow
from roomlink.record import db
from roomlink.store import Store
from roomlink.store.chain import GENESIS, canonical_row, link

log = logging.getLogger("roomlink.record.retention")

INTERVAL = 3600.0  # seconds between passes of the daemon's job
BATCH = 2000  # records removed per transaction: keeps each one short


class Tampered(Exception):
    pass


def _cut(conn: Any, dialect: str, pipe: str, cutoff: datetime) -> int:
    d = db.Db(conn, dialect)
    anchor = d.rows("SELECT count, head FROM chain_anchors WHERE pipe = :p", p=pipe)
    n, head = (anchor[0]["count"], anchor[0]["head"]) if anchor else (0, GENESIS)
    pending = d.rows(
        "SELECT min(m.seq) AS s FROM messages m JOIN outbox o ON o.message_id = m.id "
        "WHERE m.pipe = :p AND o.state = 'pending'", p=pipe,
    )[0]["s"]  # fmt: skip
    # only a prefix in record order goes: a newer record stops the cut before it
    newer = d.rows(
        "SELECT min(seq) AS s FROM messages WHERE pipe = :p AND recorded_at >= :cut",
        p=pipe, cut=cutoff,
    )[0]["s"]  # fmt: skip
    stops = [s for s in (pending, newer) if s is not None]
    stop = min(stops) if stops else None
    rows = d.rows(
        f"SELECT {db.COLUMNS}, recorded_at FROM messages WHERE pipe = :p "
        f"AND recorded_at < :cut ORDER BY seq LIMIT {BATCH}", p=pipe, cut=cutoff,
    )  # fmt: skip
    last: dict[str, Any] | None = None
    for r in rows:
        if stop is not None and r["seq"] >= stop:
            break
        h = link(head, canonical_row(r))
        if r["chain_n"] != n + 1 or r["chain"] != h:
            raise Tampered(f"pipe {pipe}: the record does not verify at position {n + 1} "
                           f"(message {r['id']}); run `roomlink history verify`")
        n, head, last = n + 1, h, r
    if last is None:
        return 0
    ids = "SELECT id FROM messages WHERE pipe = :p AND seq <= :s"
    d.execute(f"DELETE FROM natives WHERE message_id IN ({ids})", p=pipe, s=last["seq"])
    d.execute(f"DELETE FROM outbox WHERE state <> 'pending' AND message_id IN ({ids})",
              p=pipe, s=last["seq"])
    removed = d.execute("DELETE FROM messages WHERE pipe = :p AND seq <= :s",
                        p=pipe, s=last["seq"])
    d.execute("DELETE FROM chain_anchors WHERE pipe = :p", p=pipe)
    d.execute(
        "INSERT INTO chain_anchors (pipe, count, head, message_id, cut_at) "
        "VALUES (:p, :n, :h, :m, :t)", p=pipe, n=n, h=head, m=last["id"], t=utcnow(),
    )  # fmt: skip
    return removed


async def apply(store: Store, days: int, now: datetime | None = None) -> dict[str, int]:
    """Remove what ``days`` of retention no longer keeps; returns removed rows per pipe."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    removed: dict[str, int] = {}
    for pipe in await db.pipes(store):
        while True:
            n = await store.write_with(partial(_cut, dialect=store.dialect, pipe=pipe,
                                               cutoff=cutoff))
            removed[pipe] = removed.get(pipe, 0) + n
            if n < BATCH:
                break
    return {p: n for p, n in removed.items() if n}


class RetentionJob:
    """The daemon's periodic pass over every party that has ``retention_days``."""

    def __init__(self, stores: Mapping[str, Store], days: Mapping[str, int | None]) -> None:
        self.targets = {p: (stores[p], d) for p, d in days.items() if d}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.targets:
            self._task = asyncio.create_task(self._loop(), name="roomlink-retention")

    async def _loop(self) -> None:
        while True:
            for party, (store, days) in self.targets.items():
                try:
                    removed = await apply(store, days)
                except Tampered as e:
                    log.error("retention for party %s stopped: %s", party, e)
                    continue
                except Exception as e:  # the next pass tries again
                    log.warning("retention for party %s failed: %s", party, e)
                    continue
                for pipe, n in removed.items():
                    log.info("retention: party %s, pipe %s: removed %d records older than "
                             "%d days (anchor kept)", party, pipe, n, days)
            await asyncio.sleep(INTERVAL)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
