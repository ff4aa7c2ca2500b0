"""Comparing two records of one pipe, position by position.

A record is a ``Side``: a party's store (``StoreSide``), or a jsonl export of another
instance's record read back (:class:`roomlink.record.exported.ExportSide`). Both are
compared the same way, on the canonical content of each message (the chain is recomputed
from it, never taken from a stored or exported chain value).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Protocol

from roomlink.record.verify import PipeWalk, rows_in_order
from roomlink.store import Anchor, RecordRow, Store
from roomlink.store.chain import PREFIX, canonical_stored


class Side(Protocol):
    """One record to compare: where it starts, its rows in order, which ids it holds."""

    @property
    def name(self) -> str:
        """How the one-line answer names this record (a party, a file)."""
        ...

    @property
    def start(self) -> str:
        """Where this record starts when it does not start at position 1."""
        ...

    async def anchor(self, pipe: str) -> Anchor | None: ...

    def rows(self, pipe: str) -> AsyncIterator[RecordRow]: ...

    async def has(self, pipe: str, message_id: str) -> bool: ...


class StoreSide:
    """A party's store as one side of a comparison."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def name(self) -> str:
        return self.store.party

    @property
    def start(self) -> str:
        return f"retention cut {self.store.party}'s record"

    async def anchor(self, pipe: str) -> Anchor | None:
        return (await self.store.anchors()).get(pipe)

    def rows(self, pipe: str) -> AsyncIterator[RecordRow]:
        return rows_in_order(self.store, pipe)

    async def has(self, pipe: str, message_id: str) -> bool:
        row = await self.store.record_row(message_id)
        return row is not None and row.pipe == pipe


async def _next(it: AsyncIterator[RecordRow]) -> RecordRow | None:
    return await anext(it, None)


async def _align(
    walk: PipeWalk, target: int, row: RecordRow | None, it: AsyncIterator[RecordRow]
) -> RecordRow | None:
    while walk.count < target and row is not None:
        walk.feed(row)
        row = await _next(it)
    return row


def _differs(a: RecordRow, b: RecordRow) -> str | None:
    """None when both hold the same canonical content, else which fields differ."""
    data_a, data_b = canonical_stored(a), canonical_stored(b)
    if data_a == data_b:
        return None
    doc_a, doc_b = (json.loads(d[len(PREFIX):]) for d in (data_a, data_b))
    fields = [k for k in sorted(doc_a.keys() | doc_b.keys()) if doc_a.get(k) != doc_b.get(k)]
    return f"{', '.join(fields)} {'differs' if len(fields) == 1 else 'differ'}"


async def compare(a: Store, b: Store, pipe: str) -> tuple[bool, str]:
    """Two parties' stores: (agree, one line saying how far they agree or where and how
    they differ first)."""
    return await compare_sides(StoreSide(a), StoreSide(b), pipe)


async def compare_sides(a: Side, b: Side, pipe: str) -> tuple[bool, str]:
    """(agree, one line saying how far they agree or where and how they differ first);
    the line names ``a``'s last message when they agree."""
    walk_a = PipeWalk(pipe, await a.anchor(pipe))
    walk_b = PipeWalk(pipe, await b.anchor(pipe))
    it_a, it_b = a.rows(pipe), b.rows(pipe)
    ra, rb = await _next(it_a), await _next(it_b)
    # one record may start later (a retention cut, an export of the newer part): bring
    # the other to the same position and compare the chain heads there
    ra = await _align(walk_a, walk_b.count, ra, it_a)
    rb = await _align(walk_b, walk_a.count, rb, it_b)
    if walk_a.count != walk_b.count:
        short = a.name if walk_a.count < walk_b.count else b.name
        return False, (f"{pipe}: differ at position {walk_a.count + 1}: missing message: "
                       f"{short} holds fewer records than the other's retention anchor")
    if walk_a.head != walk_b.head:
        cut_a, cut_b = (-1 if w.anchor is None else w.anchor.count for w in (walk_a, walk_b))
        later = a if cut_a > cut_b else b
        return False, (f"{pipe}: differ before position {walk_a.count + 1}: the chains "
                       f"disagree where {later.start}")
    while True:
        position = walk_a.count + 1
        if ra is None and rb is None:
            return True, (f"{pipe}: agree up to {walk_a.count} messages "
                          f"(last {walk_a.last_id or '-'}, head {walk_a.head})")
        if ra is None or rb is None:
            missing, has, row = (a.name, b.name, rb) if ra is None else (b.name, a.name, ra)
            assert row is not None
            return False, (f"{pipe}: differ at position {position}: missing message: "
                           f"{missing} has no message {row.id}, which {has} holds "
                           f"(and every later one)")
        if ra.id == rb.id:
            what = _differs(ra, rb)
            if what is not None:
                return False, (f"{pipe}: differ at position {position}: different content "
                               f"of message {ra.id} ({what})")
        else:
            a_in_b = await b.has(pipe, ra.id)
            b_in_a = await a.has(pipe, rb.id)
            if a_in_b and b_in_a:
                return False, (f"{pipe}: differ at position {position}: different order: "
                               f"{a.name} has {ra.id} there, {b.name} has {rb.id}")
            if not a_in_b:
                return False, (f"{pipe}: differ at position {position}: missing message: "
                               f"{b.name} has no message {ra.id}, which {a.name} holds")
            return False, (f"{pipe}: differ at position {position}: missing message: "
                           f"{a.name} has no message {rb.id}, which {b.name} holds")
        walk_a.feed(ra)
        walk_b.feed(rb)
        ra, rb = await _next(it_a), await _next(it_b)
