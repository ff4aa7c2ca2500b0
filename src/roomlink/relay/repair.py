"""Making the parties' stores of every pipe agree again after a crash, at start.

The ingest (``relay.ingest``) writes each batch into every party's store, one
transaction per store. A ``kill -9`` after one store committed a batch and before
another did leaves the second without it; platforms that re-deliver hand the event over
again, but IRC never does, and an API client only if it retries. Every store receives
the batches in the same order, so what one store lacks is a suffix of what another
holds: the batch that was in flight. :func:`repair_stores` runs before any connector
starts and before the router takes input, and appends that suffix to each store that
lacks it exactly as the ingest would have (the same canonical bytes, so the same chain
links, and that party's outbox rows for its destination rooms, so its rooms still get
the messages). Message ids are shared by every store, and an id a store already holds is
never appended twice.

Where a store stands in a pipe is its newest message of that pipe. A store holding
nothing of a pipe is either one whose first batch of the pipe was the one in flight, or
the store of a party a reload (or an edited config) has just added to the pipe, which
lacks the whole history and must not be given it. The two are told apart by a mark the
start leaves in every such store: the pipe's newest message (none: the pipe's start)
when the start first found the party in the pipe. A store without the mark is never
repaired in that pipe. So a party a live reload adds is marked at the next start: a
kill -9 on the pipe's first batch after that reload is repaired for it only by the
platform's re-delivery or the client's retry, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from roomlink.message.model import RoomRef
from roomlink.relay.topology import Pipe, Topology
from roomlink.store import NewMessage, OutboxRow, Store
from roomlink.store.chain import canonical_stored
from roomlink.store.errors import describe
from roomlink.store.values import Anchor, PipeHead, RecordRow

log = logging.getLogger("roomlink.repair")

MAX_BATCH = 512  # the most the router writes in one batch (``relay.router``)
# the rows of each store compared: the batch in flight is at most MAX_BATCH messages plus
# the last request's few; twice that leaves room to find where the lacking store stands
WINDOW = 2 * MAX_BATCH
# the mark of a store that holds nothing of a pipe (the cursors table, never a
# connector's: a connector's cursors are under its own name)
MARK_CONNECTOR = "roomlink.repair"
FROM_THE_START = ""  # the mark's value when the pipe had no message yet


async def repair_stores(
    topology: Topology, stores: Mapping[str, Store]
) -> dict[tuple[str, str], int]:
    """Repair every pipe of ``topology``; returns (party, pipe) -> messages appended, for
    each store that lacked some."""
    anchors = {party: await store.anchors() for party, store in stores.items()}
    repaired: dict[tuple[str, str], int] = {}
    for pipe in topology.pipes.values():
        parties = [p for p in pipe.parties if p in stores]
        cut = {p: anchors[p][pipe.name] for p in parties if pipe.name in anchors[p]}
        done = await repair_pipe(pipe, {p: stores[p] for p in parties}, cut)
        for party, count in done.items():
            repaired[(party, pipe.name)] = count
    return repaired


async def repair_pipe(
    pipe: Pipe, stores: Mapping[str, Store], cut: Mapping[str, Anchor] | None = None,
    heads: Mapping[str, PipeHead] | None = None,
    copies: list[tuple[str, list[OutboxRow]]] | None = None,
) -> dict[str, int]:
    """Append to each of ``stores`` what another holds of ``pipe`` beyond it; returns
    party -> how many messages were appended. ``cut``: the stores' retention anchors of
    the pipe. ``heads`` (replicas, under the pipe's lock: ``relay.align``): where each
    store stood when read; each append is then conditional on it, and a refusal raises;
    ``copies`` gets each party's new outbox rows, for its workers."""
    newest = {party: await store.record_tail(pipe.name, 1) for party, store in stores.items()}
    if all(newest.values()) and len({t[0].id for t in newest.values()}) == 1:
        return {}  # the usual start: every store stands at the same message
    tails = {party: await store.record_tail(pipe.name, WINDOW) for party, store in stores.items()}
    standing: dict[str, str | None] = {}  # party -> its newest message id, "" or unknown
    for party, store in stores.items():
        anchor = (cut or {}).get(party)
        if tails[party]:
            standing[party] = tails[party][-1].id
        elif anchor is not None:  # retention cut all it held: it stands at the last cut
            standing[party] = anchor.message_id
        else:
            standing[party] = await store.get_cursor(MARK_CONNECTOR, pipe.name)
    appended: dict[str, int] = {}
    for party, store in stores.items():
        since = standing[party]
        if since is None:
            continue  # new to the pipe: its history starts with the next message
        missing = max((_after(tail, since) for other, tail in tails.items() if other != party),
                      key=len, default=[])
        expect = None if heads is None else {pipe.name: heads[party][:2]}
        if missing and await _append(pipe, party, store, missing, expect, copies):
            appended[party] = len(missing)
    await _mark_empty(pipe, stores, tails, standing)
    return appended


def _after(tail: Sequence[RecordRow], since: str) -> list[RecordRow]:
    """The rows of ``tail`` after message ``since`` ("": after the start of the pipe);
    none when ``tail`` does not show where ``since`` stands."""
    if since == FROM_THE_START:
        # the whole record of the pipe must be in the tail: its first row is the first
        # link after the genesis (after a retention cut it is a later one)
        whole = bool(tail) and tail[0].chain_n == 1
        return list(tail) if whole else []
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].id == since:
            return list(tail[i + 1:])
    return []


async def _append(pipe: Pipe, party: str, store: Store, rows: Sequence[RecordRow],
                  expect: Mapping[str, tuple[int, str]] | None = None,
                  copies: list[tuple[str, list[OutboxRow]]] | None = None) -> bool:
    """Append ``rows`` (another store's) to ``store`` as the ingest would have; False
    when the store refuses them (the start goes on: the stores disagree as before).
    With ``expect``: conditional on the pipe's head, and a refusal raises."""
    entries = []
    for row in rows:
        outbox = pipe.destinations(RoomRef(row.origin_connector, row.origin_room), party)
        entries.append(NewMessage(row.message(), outbox, canonical_stored(row)))
    try:
        if expect is not None:
            results = await store.start_append_at(entries, expect)
        else:
            results = await store.append(entries)
    except Exception as exc:
        if expect is not None:
            raise
        log.error("store of party %s lacks the last %d messages of pipe %s that another "
                  "party's store holds, and refused them (%s)", party, len(rows), pipe.name,
                  describe(exc), extra={"party": party, "pipe": pipe.name})
        return False
    if copies is not None:
        copies.append((party, [row for rows in results for row in rows]))
    count = sum(len(r) for r in results)
    log.warning("store of party %s lacked the last %d messages of pipe %s that another "
                "party's store holds (a crash, or a replica's lost pipe lock, between the "
                "stores' commits); appended them, "
                "with %d copies to deliver", party, len(rows), pipe.name, count,
                extra={"party": party, "pipe": pipe.name})
    return True


async def _mark_empty(pipe: Pipe, stores: Mapping[str, Store],
                      tails: Mapping[str, Sequence[RecordRow]],
                      standing: Mapping[str, str | None]) -> None:
    """Leave the mark in each store that holds nothing of the pipe and has none yet: the
    pipe's newest message now (which that store is never to be given), or the start."""
    unmarked = [p for p in stores if standing[p] is None]
    if not unmarked:
        return
    mark = _newest_id(tails)
    for party in unmarked:
        await stores[party].set_cursor(MARK_CONNECTOR, pipe.name, mark)


def _newest_id(tails: Mapping[str, Sequence[RecordRow]]) -> str:
    """The pipe's newest message (after the repair every store holding the pipe stands
    there): the last row of the tail that holds every tail's last."""
    lasts = {t[-1].id for t in tails.values() if t}
    for tail in tails.values():
        if tail and lasts <= {row.id for row in tail}:
            return tail[-1].id
    return min(lasts, default=FROM_THE_START)  # tails that disagree: any will do
