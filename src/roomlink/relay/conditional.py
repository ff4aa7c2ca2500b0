"""Replicas (``cluster.enabled``): a batch's appends, each conditional on where its
pipes stood in its store when the holder of their locks read them (``relay.align``).

Each pipe's first party (by name) among the batch's stores takes the batch before the
pipe's other stores (layers; the stores of one layer at once). That store decides
between two writers that read the same heads: one whose append it refused writes
nowhere else. So a replica that lost a pipe's lock during a batch and a later holder
never leave two stores with their batches in opposite orders: what the first wrote is
in the first party's store, and the later holder gives it to the others before its own.
A store that refuses an append (``HeadMoved``) but holds every message of it already
(the later holder gave it the batch) counts as having taken it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from roomlink.store import NewMessage, OutboxRow, Store, StoreError
from roomlink.store.errors import HeadMoved

Result = list[list[OutboxRow]] | BaseException


async def record(stores: Mapping[str, Store], per_store: Mapping[str, Sequence[NewMessage]],
                 expect: Mapping[str, Mapping[str, tuple[int, str]]]) -> list[Result]:
    """The result or error of each store, in the order of ``per_store``; after a refusal
    (not of messages it holds) the later layers are not written."""
    results: dict[str, Result] = {}
    stopped = False
    for layer in layers(per_store):
        if stopped:
            results.update({p: StoreError("not written: another store refused") for p in layer})
            continue
        found = await asyncio.gather(*(_one(stores[p], per_store[p], expect[p]) for p in layer),
                                     return_exceptions=True)
        for party, result in zip(layer, found, strict=True):
            results[party] = result
            stopped = stopped or isinstance(result, HeadMoved)
    return [results[p] for p in per_store]


async def _one(store: Store, entries: Sequence[NewMessage],
               heads: Mapping[str, tuple[int, str]]) -> list[list[OutboxRow]]:
    pipes = {e.message.pipe for e in entries}
    try:
        return await store.start_append_at(entries, {p: heads[p] for p in pipes})
    except HeadMoved:
        for e in entries:
            if await store.record_row(e.message.id) is None:
                raise
        return [[] for _ in entries]  # given to it already: its copies are queued there


def layers(per_store: Mapping[str, Sequence[NewMessage]]) -> list[list[str]]:
    """The stores in layers: a store comes after the first store (by name) of every pipe
    it takes, so each pipe's first store is written before its others."""
    first: dict[str, str] = {}
    for party in sorted(per_store):
        for e in per_store[party]:
            first.setdefault(e.message.pipe, party)
    depth: dict[str, int] = {}
    for party in sorted(per_store):  # a pipe's first store sorts before its others
        after = {first[e.message.pipe] for e in per_store[party]} - {party}
        depth[party] = 1 + max((depth[p] for p in after), default=-1)
    deepest = max(depth.values(), default=-1)
    return [[p for p in per_store if depth[p] == d] for d in range(deepest + 1)]
