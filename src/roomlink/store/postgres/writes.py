"""The PostgreSQL engine's two hot writes, appends and delivery marks, on a plain asyncpg
connection.

Through SQLAlchemy's asyncpg dialect a group of messages cost a pool checkout, a
greenlet hop and six round trips (BEGIN, two lookups, two inserts, COMMIT). Here it is
one statement that inserts the messages and their outbox rows (arrays through ``unnest``,
plain VALUES for a single message) and commits by itself, with a lookup before it only
when the chain heads are not known or a message is stored already; every statement is
prepared once per connection by asyncpg's statement cache. A group of delivery marks,
from any number of rooms, is one statement too. Same contract, same tables and same
results as the SQLite engine's ``append`` and ``mark_delivered``; the contract suite in
tests/store runs both engines. Everything else on PostgreSQL is in ``queries`` and
``record_queries``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from roomlink.message.model import Message, utcnow
from roomlink.store.chain import GENESIS, canonical, link
from roomlink.store.errors import HeadMoved, UnknownOutboxRow
from roomlink.store.values import NewMessage, OutboxRow, PipeHead

# which ids are known already, and each pipe's head: the pipe's last row in this
# store, else its retention anchor (as the SQLite engine's chain_head)
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


def _insert_one(rooms: int) -> str:
    """``_INSERT`` for a single message with ``rooms`` outbox rows, as plain VALUES: what a
    quiet room appends one message at a time, about 0.1-0.2 ms faster than the unnest
    form (bench/README.md)."""
    sql = _INSERT_ONE.get(rooms)
    if sql is None:
        message = (f"INSERT INTO messages ({', '.join(_MESSAGE_COLS)}) VALUES ("
                   + ", ".join(f"${i + 1}::{t}" for i, t in enumerate(_MESSAGE_TYPES)) + ")")
        if rooms:
            values = ", ".join(f"(${_N + 1}, ${_N + 2}, ${_N + 3 + 2 * i}, ${_N + 4 + 2 * i}, "
                               f"'pending', 0, ${_N + 3 + 2 * rooms})" for i in range(rooms))
            sql = (f"WITH m AS ({message} RETURNING 1) INSERT INTO outbox (message_id, pipe, "
                   f"connector, room, state, attempts, created_at) VALUES {values} "
                   "RETURNING id, message_id, connector, room")
        else:
            sql = message
        _INSERT_ONE[rooms] = sql
    return sql


_INSERT_ONE: dict[int, str] = {}

_MARK = (
    "UPDATE outbox o SET state = 'delivered', native_id = u.first, native_ids = u.ids, "
    "done_at = $4 FROM unnest($1::int[], $2::text[], $3::text[]) AS u(id, first, ids) "
    "WHERE o.id = u.id RETURNING o.id"
)
# the same for one mark (one room's delivery at a time: the common case), which PostgreSQL
# runs in about half the time of the unnest join
_MARK_ONE = (
    "UPDATE outbox SET state = 'delivered', native_id = $2, native_ids = $3, done_at = $4 "
    "WHERE id = $1 RETURNING id"
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


class Heads:
    """Each pipe's chain head as this store's writing connection last left it, so that an
    append needs no lookup first: one round trip instead of two (bench/README.md). Only
    that connection appends; after any other write to the store (a take-back, retention)
    the engine calls ``forget``, and so does every failed append."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[int, str]] = {}

    def forget(self) -> None:
        self.known = {}


async def append(
    conn: asyncpg.Connection, entries: Sequence[NewMessage], heads: Heads | None = None
) -> list[list[OutboxRow]]:
    """``Store.append`` in one round trip when every pipe's head is known and no message is
    stored already: then one atomic insert statement. Otherwise (or when that insert
    finds a message stored after all) a lookup first, then the insert.

    No explicit transaction is needed: under READ COMMITTED a transaction around the
    two would see no more than this does, and the insert alone is atomic.
    """
    heads = heads or Heads()
    ids = {e.message.id for e in entries}
    pipes = {e.message.pipe for e in entries}
    if len(ids) == len(entries) and pipes <= heads.known.keys():
        try:
            return await _insert(conn, entries, set(), dict(heads.known), heads)
        except asyncpg.UniqueViolationError:
            pass  # a message was stored before (a platform delivered it again): look up
        except BaseException:
            heads.forget()
            raise
    heads.forget()
    seen, known = await _lookup(conn, list(ids), list(pipes))
    return await _insert(conn, entries, seen, known, heads)


# replicas: a pipe's appends and take-backs in this database, one at a time (a
# transaction's advisory lock; not the namespace of the cluster's pipe locks, which a
# session of another connection of the same replica holds)
APPEND_NAMESPACE = 0x726C6170
LOCK_PIPES = (
    "SELECT pg_advisory_xact_lock($1, hashtext(p)) "
    "FROM (SELECT p FROM unnest($2::text[]) AS u(p) ORDER BY p) s"
)


async def append_at(
    conn: asyncpg.Connection, entries: Sequence[NewMessage],
    expect: Mapping[str, tuple[int, str]] | None,
) -> list[list[OutboxRow]]:
    """``Store.append`` for replicas: in a transaction holding the pipes' append locks of
    this database, the heads looked up there; ``HeadMoved`` (nothing stored) when a pipe
    of ``expect`` does not stand where the caller read it."""
    ids = list(dict.fromkeys(e.message.id for e in entries))
    pipes = sorted({e.message.pipe for e in entries} | set(expect or ()))
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await append_at(conn, entries, expect)
    await conn.execute(LOCK_PIPES, APPEND_NAMESPACE, pipes)
    seen, known = await _lookup(conn, ids, pipes)
    moved = sorted(p for p, head in (expect or {}).items() if known[p] != tuple(head))
    if moved:
        raise HeadMoved(f"the head of pipe {', '.join(moved)} moved")
    return await _insert(conn, entries, seen, known, Heads())


_HEADS = (
    "SELECT p.pipe, h.id, h.chain_n, h.chain, a.count, a.head "
    "FROM unnest($1::text[]) AS p(pipe) "
    "LEFT JOIN LATERAL (SELECT m.id, m.chain_n, m.chain FROM messages m "
    "WHERE m.pipe = p.pipe ORDER BY m.seq DESC LIMIT 1) h ON true "
    "LEFT JOIN chain_anchors a ON a.pipe = p.pipe"
)


async def heads(conn: asyncpg.Connection, pipes: Sequence[str]) -> dict[str, PipeHead]:
    """Where each pipe stands in this store."""
    return {
        pipe: PipeHead(chain_n or 0, chain or GENESIS, newest) if newest is not None
        else PipeHead(count or 0, head or GENESIS, "")
        for pipe, newest, chain_n, chain, count, head in await conn.fetch(_HEADS, list(pipes))
    }


async def _lookup(
    conn: asyncpg.Connection, ids: list[str], pipes: list[str]
) -> tuple[set[str], dict[str, tuple[int, str]]]:
    """(which ids are stored, each pipe's head)."""
    seen: set[str] = set()
    known: dict[str, tuple[int, str]] = {}
    for kind, key, seq, chain_n, chain, count, head in await conn.fetch(_LOOKUP, ids, pipes):
        if kind == 0:
            seen.add(key)
        elif seq is not None:
            known[key] = (chain_n or 0, chain or GENESIS)
        elif count is not None:
            known[key] = (count or 0, head or GENESIS)
        else:
            known[key] = (0, GENESIS)
    return seen, known


async def _insert(
    conn: asyncpg.Connection, entries: Sequence[NewMessage], seen: set[str],
    known: dict[str, tuple[int, str]], heads: Heads,
) -> list[list[OutboxRow]]:
    """Insert what is not in ``seen``, chained on from ``known`` (both are the caller's
    own, and change here); on success ``heads`` learns the new heads."""
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
        n, head = known[m.pipe]
        head = link(head, e.canonical or canonical(m))
        known[m.pipe] = (n + 1, head)
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
    if len(columns[0]) == 1:
        rooms = [x for pair in zip(box[2], box[3], strict=True) for x in pair]
        args = (*(c[0] for c in columns), *((box[0][0], box[1][0], *rooms, now) if rooms else ()))
        for oid, message_id, connector, room in await conn.fetch(_insert_one(len(box[2])), *args):
            outbox_ids[(message_id, connector, room)] = oid
    elif columns[0]:
        for oid, message_id, connector, room in await conn.fetch(_INSERT, *columns, *box, now):
            outbox_ids[(message_id, connector, room)] = oid
    heads.known = known
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
    elif len(marks) == 1:
        done = {r[0] for r in await conn.fetch(_MARK_ONE, ids[0], firsts[0], alls[0], utcnow())}
    else:
        done = {r[0] for r in await conn.fetch(_MARK, ids, firsts, alls, utcnow())}
    return [None if oid in done else UnknownOutboxRow(f"no outbox row {oid}") for oid in ids]
