"""Replicas (``cluster.enabled``): before a batch goes into the parties' stores, under
the pipes' locks, every store of each pipe is brought to the same message.

A replica whose lock connection broke in the middle of a batch (the server let the lock
go) may have written its batch into some stores only when the next holder takes the
lock, and its appends to the others may still be on their way. So the holder reads
where each pipe stands in each store (one read per store), gives a store that lacks the
newest messages what another holds beyond it (``relay.repair``: the same canonical
bytes, that party's copies), and every append of the batch is conditional on the head it
read: a late append of the lost holder and the holder's own can never both land on the
same head of a store, so every store keeps one order. What happens on a refusal is in
``relay.ingest``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from roomlink.relay.repair import repair_pipe
from roomlink.relay.topology import Topology
from roomlink.store import OutboxRow, Store
from roomlink.store.errors import HeadMoved
from roomlink.store.values import PipeHead

log = logging.getLogger("roomlink.router")

TRIES = 3  # reads of a pipe's heads while the lost holder's appends still land
Expect = dict[str, dict[str, tuple[int, str]]]  # party -> pipe -> (position, chain head)


async def align(topology: Topology, stores: Mapping[str, Store], pipes: Sequence[str],
                copies: list[tuple[str, list[OutboxRow]]]) -> Expect:
    """Repair what a lost lock left behind in ``pipes``; returns where each party's store
    stands in each of them, for the batch's conditional appends (``copies`` gets the
    outbox rows a repair added). Raises when a store cannot be read or repaired (the
    batch is then refused, for a retry)."""
    members = {name: [p for p in topology.pipe(name).parties if p in stores] for name in pipes}
    heads = await _read(stores, members)
    for name, parties in members.items():
        for attempt in range(TRIES):
            if len({heads[p][name].newest for p in parties}) == 1:
                break
            try:
                done = await repair_pipe(topology.pipe(name), {p: stores[p] for p in parties},
                                         heads={p: heads[p][name] for p in parties},
                                         copies=copies)
            except HeadMoved:  # the lost holder's own late append landed first: look again
                if attempt == TRIES - 1:
                    raise
                fresh = await _read(stores, {name: parties})
                for party in parties:
                    heads[party][name] = fresh[party][name]
                continue
            if done:
                log.warning("pipe %s: the stores of %s lacked messages another replica had "
                            "written before it lost the pipe's lock; appended them", name,
                            ", ".join(sorted(done)), extra={"pipe": name})
                fresh = await _read(stores, {name: sorted(done)})
                for party in done:
                    heads[party][name] = fresh[party][name]
            break
    return {party: {name: h[:2] for name, h in mine.items()} for party, mine in heads.items()}


async def _read(stores: Mapping[str, Store], members: Mapping[str, Sequence[str]]
                ) -> dict[str, dict[str, PipeHead]]:
    wanted: dict[str, list[str]] = {}
    for name, parties in members.items():
        for party in parties:
            wanted.setdefault(party, []).append(name)
    found = await asyncio.gather(*(stores[p].pipe_heads(names) for p, names in wanted.items()))
    return dict(zip(wanted, found, strict=True))
