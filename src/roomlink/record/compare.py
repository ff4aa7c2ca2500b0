"""Comparing two parties' records of one pipe, position by position."""

from __future__ import annotations

from collections.abc import AsyncIterator

from roomlink.record.verify import PipeWalk, rows_in_order
from roomlink.store import RecordRow, Store
from roomlink.store.chain import canonical_stored


async def _next(it: AsyncIterator[RecordRow]) -> RecordRow | None:
    return await anext(it, None)


async def _has(store: Store, pipe: str, message_id: str) -> bool:
    row = await store.record_row(message_id)
    return row is not None and row.pipe == pipe


async def _align(
    walk: PipeWalk, target: int, row: RecordRow | None, it: AsyncIterator[RecordRow]
) -> RecordRow | None:
    while walk.count < target and row is not None:
        walk.feed(row)
        row = await _next(it)
    return row


async def compare(a: Store, b: Store, pipe: str) -> tuple[bool, str]:
    """(agree, one line saying how far they agree or where and how they differ first)."""
    anchors_a, anchors_b = await a.anchors(), await b.anchors()
    walk_a = PipeWalk(pipe, anchors_a.get(pipe))
    walk_b = PipeWalk(pipe, anchors_b.get(pipe))
    it_a, it_b = rows_in_order(a, pipe), rows_in_order(b, pipe)
    ra, rb = await _next(it_a), await _next(it_b)
    # one party's retention may have cut further: bring the other to the same position
    # and compare the chain heads there
    ra = await _align(walk_a, walk_b.count, ra, it_a)
    rb = await _align(walk_b, walk_a.count, rb, it_b)
    if walk_a.count != walk_b.count:
        short = a.party if walk_a.count < walk_b.count else b.party
        return False, (f"{pipe}: differ at position {walk_a.count + 1}: missing message: "
                       f"{short} holds fewer records than the other's retention anchor")
    if walk_a.head != walk_b.head:
        return False, (f"{pipe}: differ before position {walk_a.count + 1}: the chains "
                       "disagree where retention cut one of the records")
    while True:
        position = walk_a.count + 1
        if ra is None and rb is None:
            return True, (f"{pipe}: agree up to {walk_a.count} messages "
                          f"(last {walk_a.last_id or '-'}, head {walk_a.head})")
        if ra is None or rb is None:
            missing, has, row = (a.party, b.party, rb) if ra is None else (b.party, a.party, ra)
            assert row is not None
            return False, (f"{pipe}: differ at position {position}: missing message: "
                           f"{missing} has no message {row.id}, which {has} holds "
                           f"(and every later one)")
        if ra.id == rb.id:
            if canonical_stored(ra) != canonical_stored(rb):
                return False, (f"{pipe}: differ at position {position}: different content "
                               f"of message {ra.id}")
        else:
            a_in_b = await _has(b, pipe, ra.id)
            b_in_a = await _has(a, pipe, rb.id)
            if a_in_b and b_in_a:
                return False, (f"{pipe}: differ at position {position}: different order: "
                               f"{a.party} has {ra.id} there, {b.party} has {rb.id}")
            if not a_in_b:
                return False, (f"{pipe}: differ at position {position}: missing message: "
                               f"{b.party} has no message {ra.id}, which {a.party} holds")
            return False, (f"{pipe}: differ at position {position}: missing message: "
                           f"{a.party} has no message {rb.id}, which {b.party} holds")
        walk_a.feed(ra)
        walk_b.feed(rb)
        ra, rb = await _next(it_a), await _next(it_b)
