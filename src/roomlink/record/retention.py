"""Retention: a party's ``retention_days`` removes its oldest records, keeping an anchor.

Per pipe, the cut takes the longest prefix (in record order) of messages stored before
the cutoff that have no pending delivery, after checking their chain; it removes them with
their delivered and failed outbox rows, and stores the anchor (pipe, count, head at the
cut) from which ``verify`` and ``digest`` go on. A prefix that does not verify is left
alone (cutting it would launder the tampering into an anchor) and logged. The store
removes and anchors (``Store.cut_prefix``); the check is here. The daemon's periodic pass
is ``roomlink.daemon.retention``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from roomlink.message.model import utcnow
from roomlink.store import RecordRow, Store
from roomlink.store.chain import canonical_stored, link

BATCH = 2000  # records removed per transaction: keeps each one short


class Tampered(Exception):
    pass


def _check(pipe: str, start: tuple[int, str], rows: Sequence[RecordRow]) -> tuple[int, str]:
    """The chain after ``rows``, from ``start``; Tampered at the first row that does not
    verify (then nothing is cut)."""
    n, head = start
    for r in rows:
        h = link(head, canonical_stored(r))
        if r.chain_n != n + 1 or r.chain != h:
            raise Tampered(f"pipe {pipe}: the record does not verify at position {n + 1} "
                           f"(message {r.id}); run `roomlink history verify`")
        n, head = n + 1, h
    return n, head


async def apply(store: Store, days: int, now: datetime | None = None) -> dict[str, int]:
    """Remove what ``days`` of retention no longer keeps; returns removed rows per pipe."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    removed: dict[str, int] = {}
    for pipe in await store.pipes():
        while True:
            n = await store.cut_prefix(pipe, cutoff, BATCH, partial(_check, pipe))
            removed[pipe] = removed.get(pipe, 0) + n
            if n < BATCH:
                break
    return {p: n for p, n in removed.items() if n}
