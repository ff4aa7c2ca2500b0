"""The two hot PostgreSQL writes, ``record`` and delivery marks, on a plain asyncpg connection.

Through SQLAlchemy's asyncpg dialect a group of messages cost a pool checkout, a
greenlet hop and six round trips (BEGIN, two lookups, two inserts, COMMIT). Here it is
two: one lookup, then one statement that inserts the messages and their outbox rows
(arrays through ``unnest``) and commits by itself; every statement is prepared once per
connection by asyncpg's statement cache. A group of delivery marks, from any number of
rooms, is one statement too. Same contract, same tables and same results
as ``ops.record`` and ``ops.mark_delivered``; the contract suite in tests/store runs them.
Everything else on PostgreSQL still goes through ``ops`` (SQLAlchemy Core).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from roomlink.model import Message, utcnow
from roomlink.record.chain import GENESIS, canonical, link
from roomlink.store.base import OutboxRow, RecordEntry, UnknownOutboxRow

# which ids are known already, and each pipe's head: the pipe's last record in this
# store, else its retention anchor (as ops.chain_head)
_LOOKUP = (
    "SELECT 0, id, NULL::int, NULL::int, NULL::text, NULL::int, NULL::text "
    "FROM messages WHERE id = ANY($1::text[]) "
    "UNION ALL "
    "SELECT 1, p.pipe, h.seq, h.chain_n, h.chain, a.count, a.head "
    "FROM unnest($2::text[]) AS p(pipe) "
    "LEFT JOIN LATERAL (SELECT m.seq, m.chain_n, m.chain FROM messages m "
    "WHERE m.pipe = p.pipe ORDER BY m.seq DESC LIMIT 1) h ON true "
    "LEFT JOIN chain_anchors a ON a.pipe = p.pipe"
)

_MESSAGE_COLS = (
    "id pipe kind origin_connector origin_room origin_native_id author_name author_id "
    "author_party author_platform text attachments reply_to target ts recorded_at chain chain_n"
).split()
_MESSAGE_TYPES = ["text"] * 14 + ["timestamptz", "timestamptz", "text", "int"]
_N = len(_MESSAGE_COLS)
# One statement, so one implicit transaction: the messages, then their outbox rows.
# ORDER BY ord: seq (so the chain order) and the outbox ids (so each room's delivery
# order) follow the order of the entries.
_INSERT = (
    f"WITH m AS (INSERT INTO messages ({', '.join(_MESSAGE_COLS)}) "
    f"SELECT {', '.join(_MESSAGE_COLS)} FROM unnest("
    + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_MESSAGE_TYPES))
    + f") WITH ORDINALITY AS u({', '.join(_MESSAGE_COLS)}, ord) ORDER BY ord RETURNING 1) "
    "INSERT INTO outbox (message_id, pipe, connector, room, state, attempts, created_at) "
    f"SELECT b_m, b_p, b_c, b_r, 'pending', 0, ${_N + 5} "
    f"FROM unnest(${_N + 1}::text[], ${_N + 2}::text[], ${_N + 3}::text[], ${_N + 4}::text[]) "
    "WITH ORDINALITY AS b(b_m, b_p, b_c, b_r, ord) ORDER BY ord "
    "RETURNING id, message_id, connector, room"
)

_MARK = (
    "UPDATE outbox o SET state = 'delivered', native_id = u.first, native_ids = u.ids, "
    "done_at = $4 FROM unnest($1::int[], $2::text[], $3::text[]) AS u(id, first, ids) "
    "WHERE o.id = u.id RETURNING o.id"
)
_NATIVES = (
    "INSERT INTO natives (connector, room, native_id, message_id, outbox_id) "
    "SELECT o.connector, o.room, u.n, o.message_id, o.id "
    "FROM unnest($1::int[], $2::text[]) WITH ORDINALITY AS u(id, n, ord) "
    "JOIN outbox o ON o.id = u.id ORDER BY u.ord"
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _attachments(m: Message) -> str:
    return json.dumps([x.model_dump() for x in m.attachments]) if m.attachments else "[]"


async def record(
    conn: asyncpg.Connection, entries: Sequence[RecordEntry]
) -> list[list[OutboxRow]]:
    """``ops.record`` in two round trips: a lookup, then one atomic insert statement.

    No explicit transaction is needed: under READ COMMITTED a transaction around the
    two would see no more than this does, and the insert alone is atomic.
    """
    ids = list({e.message.id: None for e in entries})
    pipes = list({e.message.pipe: None for e in entries})
    seen: set[str] = set()
    heads: dict[str, tuple[int, str]] = {}
    for kind, key, seq, chain_n, chain, count, head in await conn.fetch(_LOOKUP, ids, pipes):
        if kind == 0:
            seen.add(key)
        elif seq is not None:
            heads[key] = (chain_n or 0, chain or GENESIS)
        elif count is not None:
            heads[key] = (count or 0, head or GENESIS)
        else:
            heads[key] = (0, GENESIS)
    now = utcnow()
    columns: list[list[Any]] = [[] for _ in _MESSAGE_COLS]
    box: list[list[Any]] = [[], [], [], []]
    new: list[bool] = []
    for e in entries:
        m = e.message
        if m.id in seen:
            new.append(False)
            continue
        seen.add(m.id)
        new.append(True)
        n, head = heads[m.pipe]
        head = link(head, canonical(m))
        heads[m.pipe] = (n + 1, head)
        a = m.author
        for col, value in zip(columns, (
            m.id, m.pipe, m.kind.value, m.origin_connector, m.origin_room, m.origin_native_id,
            a.name, a.id, a.party, a.platform, m.text, _attachments(m), m.reply_to, m.target,
            _utc(m.ts), now, head, n + 1,
        ), strict=True):  # fmt: skip
            col.append(value)
        for ref in e.outbox:
            box[0].append(m.id)
            box[1].append(m.pipe)
            box[2].append(ref.connector)
            box[3].append(ref.room)
    outbox_ids: dict[tuple[str, str, str], int] = {}
    if columns[0]:
        for oid, message_id, connector, room in await conn.fetch(_INSERT, *columns, *box, now):
            outbox_ids[(message_id, connector, room)] = oid
    result: list[list[OutboxRow]] = []
    for e, is_new in zip(entries, new, strict=True):
        m = e.message
        result.append(
            [
                OutboxRow(outbox_ids[(m.id, ref.connector, ref.room)], m, ref.connector,
                          ref.room, 0)
                for ref in e.outbox
            ]
            if is_new
            else []
        )
    return result


async def mark_delivered_many(
    conn: asyncpg.Connection, marks: Sequence[tuple[int, Sequence[str]]]
) -> list[Exception | None]:
    """Mark every (outbox id, native ids) delivered: one statement, so one implicit
    transaction, unless some copy was split into several posts (then the extra ids go to
    ``natives`` in the same transaction). Per mark: None, or UnknownOutboxRow."""
    ids = [oid for oid, _ in marks]
    firsts = [n[0] if n else None for _, n in marks]
    alls = [json.dumps(list(n)) for _, n in marks]
    extra = [(oid, x) for oid, n in marks for x in n[1:]]
    if extra:
        async with conn.transaction():
            done = {r[0] for r in await conn.fetch(_MARK, ids, firsts, alls, utcnow())}
            extra = [(oid, x) for oid, x in extra if oid in done]
            if extra:
                await conn.execute(_NATIVES, [o for o, _ in extra], [x for _, x in extra])
    else:
        done = {r[0] for r in await conn.fetch(_MARK, ids, firsts, alls, utcnow())}
    return [None if oid in done else UnknownOutboxRow(f"no outbox row {oid}") for oid in ids]
