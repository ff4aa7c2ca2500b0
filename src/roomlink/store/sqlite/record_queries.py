"""The SQLite engine's statements for the party's record (``roomlink.record``): its rows
in order, anchors and chain heads, full-text search, and retention's cut."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from roomlink.message.model import utcnow
from roomlink.store import columns
from roomlink.store.chain import GENESIS
from roomlink.store.contract import PrefixCheck
from roomlink.store.sqlite.queries import read_time, stored_time
from roomlink.store.values import Anchor, RecordRow, SearchHit

_SELECT_ROWS = f"SELECT {columns.RECORD_COLUMNS} FROM messages"


def _row(r: Sequence[Any]) -> RecordRow:
    return columns.record_row(r, read_time(r[15]))


def pipes(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT pipe FROM messages UNION SELECT pipe FROM chain_anchors ORDER BY pipe"
    )
    return [r[0] for r in rows]


def anchors(conn: sqlite3.Connection) -> dict[str, Anchor]:
    rows = conn.execute("SELECT pipe, count, head, message_id, cut_at FROM chain_anchors")
    return {r[0]: Anchor(r[0], r[1], r[2], r[3], read_time(r[4])) for r in rows}


def record_size(conn: sqlite3.Connection, pipe: str | None) -> int:
    if pipe is None:
        (n,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    else:
        (n,) = conn.execute("SELECT count(*) FROM messages WHERE pipe = ?", (pipe,)).fetchone()
    return int(n)


def record_row(conn: sqlite3.Connection, message_id: str) -> RecordRow | None:
    row = conn.execute(f"{_SELECT_ROWS} WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else _row(row)


def record_page(
    conn: sqlite3.Connection, pipe: str | None, after_seq: int, limit: int
) -> list[RecordRow]:
    if pipe is None:
        rows = conn.execute(f"{_SELECT_ROWS} WHERE seq > ? ORDER BY seq LIMIT ?",
                            (after_seq, limit))
    else:
        rows = conn.execute(f"{_SELECT_ROWS} WHERE seq > ? AND pipe = ? ORDER BY seq LIMIT ?",
                            (after_seq, pipe, limit))
    return [_row(r) for r in rows]


def record_tail(conn: sqlite3.Connection, pipe: str, limit: int) -> list[RecordRow]:
    rows = conn.execute(f"{_SELECT_ROWS} WHERE pipe = ? ORDER BY seq DESC LIMIT ?",
                        (pipe, limit))
    return [_row(r) for r in rows][::-1]


def chain_heads(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {
        r[0]: (r[1], r[2]) for r in conn.execute("SELECT pipe, count, head FROM chain_anchors")
    }
    rows = conn.execute(
        "SELECT m.pipe, m.chain_n, m.chain FROM messages m JOIN (SELECT pipe, max(seq) AS s "
        "FROM messages GROUP BY pipe) last ON m.seq = last.s"
    )
    for pipe, n, chain in rows:
        found[pipe] = (n or 0, chain or "")
    return found


def search(
    conn: sqlite3.Connection, words: Sequence[str], pipe: str | None, author: str | None,
    since: datetime | None, limit: int,
) -> list[SearchHit]:
    """On the FTS5 table ``messages_fts`` (unicode61 tokenizer: words of every script,
    case-folded, diacritics removed), which the engine brings up to date first."""
    # each word quoted: the user's text is never FTS5 query syntax
    params: list[Any] = [" ".join('"' + w.replace('"', '""') + '"' for w in words)]
    sql = (
        "SELECT m.ts, m.author_name, m.author_party, m.author_platform, m.pipe, m.id, "
        "m.kind, m.target, snippet(messages_fts, 0, '[', ']', '…', 16) "
        "FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid "
        "WHERE messages_fts MATCH ?"
    )
    if pipe is not None:
        sql += " AND m.pipe = ?"
        params.append(pipe)
    if author is not None:
        sql += " AND (lower(m.author_name) = lower(?) OR m.author_id = ?)"
        params += [author, author]
    if since is not None:
        sql += " AND m.ts >= ?"
        params.append(stored_time(since))
    rows = conn.execute(sql + " ORDER BY m.seq DESC LIMIT ?", (*params, limit))
    return [SearchHit(read_time(r[0]), *r[1:]) for r in rows]


def cut_prefix(
    conn: sqlite3.Connection, pipe: str, cutoff: datetime, limit: int, check: PrefixCheck
) -> int:
    """``Store.cut_prefix`` inside the caller's transaction."""
    anchor = conn.execute("SELECT count, head FROM chain_anchors WHERE pipe = ?",
                          (pipe,)).fetchone()
    (pending,) = conn.execute(
        "SELECT min(m.seq) FROM messages m JOIN outbox o ON o.message_id = m.id "
        "WHERE m.pipe = ? AND o.state = 'pending'", (pipe,),
    ).fetchone()  # fmt: skip
    # only a prefix in seq order goes: a newer row stops the cut before it
    cut = stored_time(cutoff)
    (newer,) = conn.execute(
        "SELECT min(seq) FROM messages WHERE pipe = ? AND recorded_at >= ?", (pipe, cut)
    ).fetchone()
    stop = min((s for s in (pending, newer) if s is not None), default=None)
    where, params = "pipe = ? AND recorded_at < ?", [pipe, cut]
    if stop is not None:
        where += " AND seq < ?"
        params.append(stop)
    rows = [_row(r) for r in conn.execute(
        f"{_SELECT_ROWS} WHERE {where} ORDER BY seq LIMIT ?", (*params, limit))]
    if not rows:
        return 0
    n, head = check((anchor[0], anchor[1]) if anchor else (0, GENESIS), rows)
    last = rows[-1]
    ids = "SELECT id FROM messages WHERE pipe = ? AND seq <= ?"
    conn.execute(f"DELETE FROM natives WHERE message_id IN ({ids})", (pipe, last.seq))
    conn.execute(f"DELETE FROM outbox WHERE state <> 'pending' AND message_id IN ({ids})",
                 (pipe, last.seq))
    removed = conn.execute("DELETE FROM messages WHERE pipe = ? AND seq <= ?",
                           (pipe, last.seq)).rowcount
    conn.execute("DELETE FROM chain_anchors WHERE pipe = ?", (pipe,))
    conn.execute(
        "INSERT INTO chain_anchors (pipe, count, head, message_id, cut_at) "
        "VALUES (?, ?, ?, ?, ?)", (pipe, n, head, last.id, stored_time(utcnow())),
    )  # fmt: skip
    return removed
