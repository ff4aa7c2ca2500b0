"""Retention: a party's ``retention_days`` removes its oldest records, keeping an anchor.

Per pipe, the cut takes the longest prefix (in record order) of messages stored before
the cutoff that have no pending delivery, after checking their chain; it removes them with
their delivered and failed outbox rows, and stores the anchor (pipe, count, head at the
cut) from which ``verify`` and ``digest`` go on. A prefix that does not verify is left
alone (cutting it would launder the tampering into an anchor) and logged. The store
removes and anchors (``Store.cut_prefix``); the check is here. The daemon's periodic pass
is ``roomlink.daemon.retention``.

Files go with the last message that refers to them: after the cut, every kept file no
kept message refers to is removed (:func:`remove_unreferenced`), except those kept within
``FILE_GRACE``: a file is kept before the message that carries it is handed in, and one a
``kill -9`` orphaned in between is removed by a later pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from roomlink.message.model import utcnow
from roomlink.store import RecordRow, Store
from roomlink.store.chain import canonical_stored, link

BATCH = 2000  # records removed per transaction: keeps each one short
FILE_GRACE = timedelta(hours=1)  # a file younger than this may still be on its way in


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
    await remove_unreferenced(store, now)
    return {p: n for p, n in removed.items() if n}


async def remove_unreferenced(store: Store, now: datetime | None = None) -> int:
    """Remove the files (and their ids) no kept message refers to, but those kept within
    ``FILE_GRACE`` of ``now``; returns how many."""
    before = (now or utcnow()) - FILE_GRACE
    kept = await store.files.kept()
    referenced = await store.file_refs()  # after listing: a file kept meanwhile is young
    unreferenced = [sha for sha, at in kept if sha not in referenced and at < before]
    if not unreferenced:
        return 0
    removed = await store.files.remove(unreferenced, before)
    await store.forget_file_ids(removed)
    return len(removed)
