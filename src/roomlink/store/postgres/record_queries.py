"""The PostgreSQL engine's statements for the party's record (``roomlink.record``): its
rows in order, anchors and chain heads, full-text search, and retention's cut, as
coroutines of an asyncpg connection."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from roomlink.message.model import utcnow
from roomlink.store import columns
from roomlink.store.chain import GENESIS
from roomlink.store.contract import PrefixCheck
from roomlink.store.postgres.queries import utc
from roomlink.store.values import Anchor, RecordRow, SearchHit

_SELECT_ROWS = f"SELECT {columns.RECORD_COLUMNS} FROM messages"


def _row(r: Sequence[Any]) -> RecordRow:
    return columns.record_row(r, utc(r[15]))


async def pipes(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT pipe FROM messages UNION SELECT pipe FROM chain_anchors ORDER BY pipe"
    )
    return [r[0] for r in rows]


async def anchors(conn: asyncpg.Connection) -> dict[str, Anchor]:
    rows = await conn.fetch("SELECT pipe, count, head, message_id, cut_at FROM chain_anchors")
    return {r[0]: Anchor(r[0], r[1], r[2], r[3], utc(r[4])) for r in rows}


async def record_size(conn: asyncpg.Connection, pipe: str | None) -> int:
    if pipe is None:
        n = await conn.fetchval("SELECT count(*) FROM messages")
    else:
        n = await conn.fetchval("SELECT count(*) FROM messages WHERE pipe = $1", pipe)
    return int(n)


async def record_row(conn: asyncpg.Connection, message_id: str) -> RecordRow | None:
    row = await conn.fetchrow(f"{_SELECT_ROWS} WHERE id = $1", message_id)
    return None if row is None else _row(row)


async def record_page(
    conn: asyncpg.Connection, pipe: str | None, after_seq: int, limit: int
) -> list[RecordRow]:
    if pipe is None:
        rows = await conn.fetch(f"{_SELECT_ROWS} WHERE seq > $1 ORDER BY seq LIMIT $2",
                                after_seq, limit)
    else:
        rows = await conn.fetch(f"{_SELECT_ROWS} WHERE seq > $1 AND pipe = $2 ORDER BY seq "
                                "LIMIT $3", after_seq, pipe, limit)
    return [_row(r) for r in rows]


async def record_tail(conn: asyncpg.Connection, pipe: str, limit: int) -> list[RecordRow]:
    rows = await conn.fetch(f"{_SELECT_ROWS} WHERE pipe = $1 ORDER BY seq DESC LIMIT $2",
                            pipe, limit)
    return [_row(r) for r in rows][::-1]


async def chain_heads(conn: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {
        r[0]: (r[1], r[2])
        for r in await conn.fetch("SELECT pipe, count, head FROM chain_anchors")
    }
    rows = await conn.fetch(
        "SELECT m.pipe, m.chain_n, m.chain FROM messages m JOIN (SELECT pipe, max(seq) AS s "
        "FROM messages GROUP BY pipe) last ON m.seq = last.s"
    )
    for pipe, n, chain in rows:
        found[pipe] = (n or 0, chain or "")
    return found


async def search(
    conn: asyncpg.Connection, words: Sequence[str], pipe: str | None, author: str | None,
    since: datetime | None, limit: int,
) -> list[SearchHit]:
    """On a GIN index over ``to_tsvector('simple', text)`` ('simple' does not stem, so
    Russian and English alike match word for word), kept within each commit."""
    params: list[Any] = [" ".join(words)]
    sql = (
        "SELECT m.ts, m.author_name, m.author_party, m.author_platform, m.pipe, m.id, "
        "m.kind, m.target, ts_headline('simple', m.text, q, "
        "'StartSel=[, StopSel=], MaxWords=24, MinWords=8') "
        "FROM messages m, plainto_tsquery('simple', $1) q "
        "WHERE to_tsvector('simple', m.text) @@ q"
    )
    if pipe is not None:
        params.append(pipe)
        sql += f" AND m.pipe = ${len(params)}"
    if author is not None:
        params.append(author)
        n = len(params)
        sql += f" AND (lower(m.author_name) = lower(${n}) OR m.author_id = ${n})"
    if since is not None:
        params.append(since)
        sql += f" AND m.ts >= ${len(params)}"
    params.append(limit)
    rows = await conn.fetch(sql + f" ORDER BY m.seq DESC LIMIT ${len(params)}", *params)
    return [SearchHit(utc(r[0]), *r[1:]) for r in rows]


async def cut_prefix(
    conn: asyncpg.Connection, pipe: str, cutoff: datetime, limit: int, check: PrefixCheck
) -> int:
    """``Store.cut_prefix`` inside the caller's transaction."""
    anchor = await conn.fetchrow("SELECT count, head FROM chain_anchors WHERE pipe = $1", pipe)
    pending = await conn.fetchval(
        "SELECT min(m.seq) FROM messages m JOIN outbox o ON o.message_id = m.id "
        "WHERE m.pipe = $1 AND o.state = 'pending'", pipe,
    )  # fmt: skip
    # only a prefix in seq order goes: a newer row stops the cut before it
    newer = await conn.fetchval(
        "SELECT min(seq) FROM messages WHERE pipe = $1 AND recorded_at >= $2", pipe, cutoff
    )
    stop = min((s for s in (pending, newer) if s is not None), default=None)
    where, params = "pipe = $1 AND recorded_at < $2", [pipe, cutoff]
    if stop is not None:
        params.append(stop)
        where += " AND seq < $3"
    params.append(limit)
    rows = [_row(r) for r in await conn.fetch(
        f"{_SELECT_ROWS} WHERE {where} ORDER BY seq LIMIT ${len(params)}", *params)]
    if not rows:
        return 0
    n, head = check((anchor[0], anchor[1]) if anchor else (0, GENESIS), rows)
    last = rows[-1]
    ids = "SELECT id FROM messages WHERE pipe = $1 AND seq <= $2"
    await conn.execute(f"DELETE FROM natives WHERE message_id IN ({ids})", pipe, last.seq)
    await conn.execute(f"DELETE FROM outbox WHERE state <> 'pending' AND message_id IN ({ids})",
                       pipe, last.seq)
    status = await conn.execute("DELETE FROM messages WHERE pipe = $1 AND seq <= $2",
                                pipe, last.seq)
    await conn.execute("DELETE FROM chain_anchors WHERE pipe = $1", pipe)
    await conn.execute(
        "INSERT INTO chain_anchors (pipe, count, head, message_id, cut_at) "
        "VALUES ($1, $2, $3, $4, $5)", pipe, n, head, last.id, utcnow(),
    )  # fmt: skip
    return int(status.split()[-1])  # "DELETE <count>"


# -- files ---------------------------------------------------------------------------------


async def file_id(conn: asyncpg.Connection, sha256: str) -> str:
    await conn.execute(
        "INSERT INTO file_ids (id, sha256, created_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (sha256) DO NOTHING",
        secrets.token_urlsafe(24), sha256, utcnow(),
    )
    return str(await conn.fetchval("SELECT id FROM file_ids WHERE sha256 = $1", sha256))


async def file_by_id(conn: asyncpg.Connection, file_id: str) -> str | None:
    found = await conn.fetchval("SELECT sha256 FROM file_ids WHERE id = $1", file_id)
    return None if found is None else str(found)


async def file_refs(conn: asyncpg.Connection) -> set[str]:
    """The files the record refers to, and those of messages held for a host."""
    rows = await conn.fetch(
        "SELECT DISTINCT e->>'sha256' FROM messages m, "
        "jsonb_array_elements(m.attachments::jsonb) e "
        "WHERE m.attachments <> '[]' AND e->>'sha256' IS NOT NULL "
        "UNION SELECT e->>'sha256' FROM held h, "
        "jsonb_array_elements(COALESCE(h.message::jsonb -> 'attachments', '[]'::jsonb)) e "
        "WHERE e->>'sha256' IS NOT NULL"
    )
    return {str(r[0]) for r in rows}


async def forget_file_ids(conn: asyncpg.Connection, sha256s: list[str]) -> None:
    await conn.execute("DELETE FROM file_ids WHERE sha256 = ANY($1::text[])", sha256s)
