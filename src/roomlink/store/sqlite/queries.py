"""The SQLite engine's statements for the message path and operators, as functions of
the ``sqlite3`` connection itself (``engine.SqliteStore`` runs them; the record's are in
``record_queries``).

The same tables as the PostgreSQL engine (created by the Alembic migrations), without
SQLAlchemy's per-statement overhead: on the benchmark machine one relayed message cost
3.6 ms of store time through SQLAlchemy Core and 0.14 ms here (bench/README.md). The
contract suite in tests/store runs both engines.
Timestamps use SQLAlchemy's SQLite format (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from roomlink.message.model import Message, utcnow
from roomlink.store import columns
from roomlink.store.chain import GENESIS, canonical, link
from roomlink.store.errors import UnknownOutboxRow
from roomlink.store.values import (
    DELIVERED,
    FAILED,
    PENDING,
    NewMessage,
    OutboxEntry,
    OutboxRow,
    PipeHead,
    RoomCount,
)

_IN_CHUNK = 500  # ids per IN (...): far below SQLite's parameter limit

_COLS = columns.COLUMNS
_MESSAGE_COLS = columns.M_COLUMNS

_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_COLS}, recorded_at, chain, chain_n) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (message_id, pipe, connector, room, state, attempts, created_at) "
    "VALUES (?, ?, ?, ?, 'pending', 0, ?)"
)


def stored_time(value: datetime) -> str:
    """A datetime as this engine stores it."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def read_time(text: str) -> datetime:
    """A stored time as a timezone-aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _message_params(m: Message, now: str) -> tuple[Any, ...]:
    a = m.author
    attachments = json.dumps([x.model_dump() for x in m.attachments]) if m.attachments else "[]"
    return (
        m.id, m.pipe, m.kind.value, m.origin_connector, m.origin_room, m.origin_native_id,
        a.name, a.id, a.party, a.platform, m.text, attachments, m.reply_to, m.target,
        stored_time(m.ts), now,
    )  # fmt: skip


def _message(r: Sequence[Any]) -> Message:
    """A message from the 15 columns of ``_COLS``, in order."""
    return columns.message(r, read_time(r[14]))


class Connection(sqlite3.Connection):
    """The store's connection, which remembers (position, chain) of each pipe's last
    row: that saves a query per append (bench/README.md). Only this connection appends,
    and the engine calls ``forget_heads`` whenever a transaction rolls back, so what it
    remembers was committed or is about to be."""

    chain_heads: dict[str, tuple[int, str]]

    def forget_heads(self) -> None:
        self.chain_heads = {}


def chain_head(conn: sqlite3.Connection, pipe: str) -> tuple[int, str]:
    """(position, chain) of the pipe's last row in this store, or of its anchor."""
    row = conn.execute(
        "SELECT chain_n, chain FROM messages WHERE pipe = ? ORDER BY seq DESC LIMIT 1", (pipe,)
    ).fetchone() or conn.execute(
        "SELECT count, head FROM chain_anchors WHERE pipe = ?", (pipe,)
    ).fetchone()
    return (row[0] or 0, row[1] or GENESIS) if row else (0, GENESIS)


def pipe_head(conn: sqlite3.Connection, pipe: str) -> PipeHead:
    """Where the pipe stands in this store (``Store.pipe_heads``)."""
    row = conn.execute(
        "SELECT chain_n, chain, id FROM messages WHERE pipe = ? ORDER BY seq DESC LIMIT 1",
        (pipe,)).fetchone()
    if row:
        return PipeHead(row[0] or 0, row[1] or GENESIS, row[2])
    n, head = chain_head(conn, pipe)
    return PipeHead(n, head, "")


def append(conn: sqlite3.Connection, entries: Sequence[NewMessage]) -> list[list[OutboxRow]]:
    """``Store.append`` inside the caller's transaction."""
    now = stored_time(utcnow())
    result: list[list[OutboxRow]] = []
    heads: dict[str, tuple[int, str]] = (
        conn.chain_heads if isinstance(conn, Connection) else {}
    )
    for e in entries:
        m = e.message
        n, head = heads.get(m.pipe) or chain_head(conn, m.pipe)
        head = link(head, e.canonical or canonical(m))
        # a message already stored (or earlier in this call) inserts nothing: no query
        # beforehand, the unique id decides, and the pipe's head stays where it was
        cur = conn.execute(_INSERT_MESSAGE, (*_message_params(m, now), head, n + 1))
        if cur.rowcount == 0:
            result.append([])
            continue
        heads[m.pipe] = (n + 1, head)
        rows = []
        for ref in e.outbox:
            cur = conn.execute(_INSERT_OUTBOX, (m.id, m.pipe, ref.connector, ref.room, now))
            assert cur.lastrowid is not None
            rows.append(OutboxRow(cur.lastrowid, m, ref.connector, ref.room, 0))
        result.append(rows)
    return result


def index_pending(conn: sqlite3.Connection, limit: int) -> int:
    """Add up to ``limit`` of the messages stored since the last run to the search index
    (migration 0003: one FTS5 segment per batch, not per message); how many it added."""
    (indexed,) = conn.execute("SELECT indexed_seq FROM messages_fts_state").fetchone()
    (top, count) = conn.execute(
        "SELECT max(seq), count(*) FROM "
        "(SELECT seq FROM messages WHERE seq > ? ORDER BY seq LIMIT ?)", (indexed, limit)
    ).fetchone()
    if not count:
        return 0
    conn.execute("INSERT INTO messages_fts(rowid, text) "
                 "SELECT seq, text FROM messages WHERE seq > ? AND seq <= ?", (indexed, top))
    conn.execute("UPDATE messages_fts_state SET indexed_seq = ?", (top,))
    return int(count)


def _update_outbox(conn: sqlite3.Connection, outbox_id: int, sql: str, *params: Any) -> None:
    if conn.execute(f"UPDATE outbox SET {sql} WHERE id = ?", (*params, outbox_id)).rowcount == 0:
        raise UnknownOutboxRow(f"no outbox row {outbox_id}")


def mark_delivered(conn: sqlite3.Connection, outbox_id: int, native_ids: Sequence[str]) -> None:
    native_ids = list(native_ids)
    _update_outbox(
        conn, outbox_id, "state = ?, native_id = ?, native_ids = ?, done_at = ?",
        DELIVERED, native_ids[0] if native_ids else None, json.dumps(native_ids),
        stored_time(utcnow()),
    )  # fmt: skip
    if len(native_ids) > 1:
        conn.executemany(
            "INSERT INTO natives (connector, room, native_id, message_id, outbox_id) "
            "SELECT connector, room, ?, message_id, id FROM outbox WHERE id = ?",
            [(n, outbox_id) for n in native_ids[1:]],
        )


def mark_failed(conn: sqlite3.Connection, outbox_id: int, error: str, attempts: int) -> None:
    _update_outbox(
        conn, outbox_id, "state = ?, last_error = ?, attempts = ?, done_at = ?",
        FAILED, error, attempts, stored_time(utcnow()),
    )  # fmt: skip


def note_attempt(conn: sqlite3.Connection, outbox_id: int, error: str, attempts: int) -> None:
    _update_outbox(conn, outbox_id, "last_error = ?, attempts = ?", error, attempts)


def set_cursor(conn: sqlite3.Connection, connector: str, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO cursors (connector, key, value, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        (connector, key, value, stored_time(utcnow())),
    )


def get_cursor(conn: sqlite3.Connection, connector: str, key: str) -> str | None:
    row = conn.execute(
        "SELECT value FROM cursors WHERE connector = ? AND key = ?", (connector, key)
    ).fetchone()
    return None if row is None else str(row[0])


def pending(
    conn: sqlite3.Connection, connector: str, room: str, after_id: int, limit: int
) -> list[OutboxRow]:
    rows = conn.execute(
        f"SELECT o.id, o.attempts, {_MESSAGE_COLS} FROM outbox o "
        "JOIN messages m ON m.id = o.message_id "
        "WHERE o.connector = ? AND o.room = ? AND o.state = 'pending' AND o.id > ? "
        "ORDER BY o.id LIMIT ?",
        (connector, room, after_id, limit),
    )
    return [OutboxRow(r[0], _message(r[2:]), connector, room, r[1]) for r in rows]


def native_id(conn: sqlite3.Connection, message_id: str, connector: str, room: str) -> str | None:
    row = conn.execute(
        "SELECT native_id FROM outbox WHERE message_id = ? AND connector = ? AND room = ? "
        "AND state = 'delivered'",
        (message_id, connector, room),
    ).fetchone()
    if row is not None and row[0] is not None:
        return str(row[0])
    row = conn.execute(
        "SELECT origin_native_id FROM messages "
        "WHERE id = ? AND origin_connector = ? AND origin_room = ?",
        (message_id, connector, room),
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def message_id_for_native(
    conn: sqlite3.Connection, connector: str, room: str, native: str
) -> str | None:
    """The newest message that has ``native`` as its id in that room (original or copy)."""
    row = conn.execute(
        "SELECT id FROM (SELECT seq, id FROM messages WHERE origin_connector = ? "
        "AND origin_room = ? AND origin_native_id = ? "
        "UNION ALL SELECT m.seq, m.id FROM outbox o JOIN messages m ON m.id = o.message_id "
        "WHERE o.connector = ? AND o.room = ? AND o.native_id = ? "
        "UNION ALL SELECT m.seq, m.id FROM natives n JOIN messages m ON m.id = n.message_id "
        "WHERE n.connector = ? AND n.room = ? AND n.native_id = ?) ORDER BY seq DESC LIMIT 1",
        (connector, room, native) * 3,
    ).fetchone()
    return None if row is None else str(row[0])


def get_message(conn: sqlite3.Connection, message_id: str) -> Message | None:
    row = conn.execute(f"SELECT {_COLS} FROM messages WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else _message(row)


def list_messages(
    conn: sqlite3.Connection, pipe: str | None, after_seq: int, limit: int
) -> list[tuple[int, Message]]:
    where = "seq > ?"
    params: list[object] = [after_seq]
    if pipe is not None:
        where = "seq > ? AND pipe = ?"
        params = [after_seq, pipe]
    rows = conn.execute(
        f"SELECT seq, {_COLS} FROM messages WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
    )
    return [(r[0], _message(r[1:])) for r in rows]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    out = {"messages": conn.execute("SELECT count(*) FROM messages").fetchone()[0]}
    out |= {PENDING: 0, DELIVERED: 0, FAILED: 0}
    for state, n in conn.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
        out[state] = n
    return out


# -- for operators ---------------------------------------------------------------------


def _filters(
    state: str | None, connector: str | None, room: str | None, message_id: str | None
) -> tuple[str, list[Any]]:
    where, params = ["1 = 1"], []
    for column, value in (("state", state), ("connector", connector), ("room", room),
                          ("message_id", message_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(where), params


def outbox_entries(
    conn: sqlite3.Connection, state: str | None, connector: str | None, room: str | None,
    message_id: str | None, limit: int, newest_first: bool,
) -> list[OutboxEntry]:
    where, params = _filters(state, connector, room, message_id)
    order = "DESC" if newest_first else "ASC"
    rows = conn.execute(
        "SELECT id, message_id, pipe, connector, room, state, attempts, last_error, "
        f"created_at, done_at FROM outbox WHERE {where} ORDER BY id {order} LIMIT ?",
        (*params, limit),
    )
    return [
        OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], read_time(r[8]),
                    None if r[9] is None else read_time(r[9]))
        for r in rows
    ]


def retry_failed(
    conn: sqlite3.Connection, connector: str | None, room: str | None, message_id: str | None
) -> int:
    """Put failed copies back in the queue with a fresh retry budget; their ids keep
    their place in the room's order."""
    where, params = _filters(FAILED, connector, room, message_id)
    cur = conn.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, last_error = NULL, done_at = NULL "
        f"WHERE {where}", params,
    )
    return cur.rowcount


def room_counts(conn: sqlite3.Connection) -> list[RoomCount]:
    rows = conn.execute(
        "SELECT pipe, connector, room, state, count(*) FROM outbox "
        "WHERE state IN ('pending', 'failed') GROUP BY pipe, connector, room, state"
    )
    return [RoomCount(*r) for r in rows]


def pending_heads(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """The oldest pending row of each room (from the partial pending index)."""
    rows = conn.execute(
        "SELECT connector, room, min(id) FROM outbox WHERE state = 'pending' "
        "GROUP BY connector, room"
    )
    return {(r[0], r[1]): r[2] for r in rows}


def size_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


def forget(conn: sqlite3.Connection, message_ids: Sequence[str], since: datetime) -> int:
    """Undo appending these messages where it happened at or after ``since``, with their
    outbox rows; only ever used on the newest messages of a store (see roomlink.relay.ingest),
    so that the hash chains and the order stay intact. Returns how many were removed."""
    ids = list(dict.fromkeys(message_ids))
    removed = 0
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i : i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        found = [r[0] for r in conn.execute(
            f"SELECT id FROM messages WHERE id IN ({marks}) AND recorded_at >= ?",
            (*chunk, stored_time(since)),
        )]  # fmt: skip
        if not found:
            continue
        marks = ",".join("?" * len(found))
        for table, column in (("natives", "message_id"), ("outbox", "message_id"),
                              ("messages", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", found)
        removed += len(found)
    if removed and isinstance(conn, Connection):
        conn.forget_heads()  # the heads it remembers may be of rows just removed
    return removed


def delivered_after(
    conn: sqlite3.Connection, connector: str, room: str, message_id: str, limit: int
) -> list[Message] | None:
    """What the room received after ``message_id`` (any message this store holds), in
    order; None when the store holds no such message."""
    row = conn.execute("SELECT seq FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return None
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLS} FROM outbox o JOIN messages m ON m.id = o.message_id "
        "WHERE o.connector = ? AND o.room = ? AND o.state = 'delivered' AND m.seq > ? "
        "ORDER BY m.seq, o.id LIMIT ?",
        (connector, room, row[0], limit),
    )
    return [_message(r) for r in rows]


# -- files ---------------------------------------------------------------------------------


def file_id(conn: sqlite3.Connection, sha256: str) -> str:
    conn.execute(
        "INSERT INTO file_ids (id, sha256, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (sha256) DO NOTHING",
        (secrets.token_urlsafe(24), sha256, stored_time(utcnow())),
    )
    row = conn.execute("SELECT id FROM file_ids WHERE sha256 = ?", (sha256,)).fetchone()
    return str(row[0])


def file_by_id(conn: sqlite3.Connection, file_id: str) -> str | None:
    row = conn.execute("SELECT sha256 FROM file_ids WHERE id = ?", (file_id,)).fetchone()
    return None if row is None else str(row[0])


def file_refs(conn: sqlite3.Connection) -> set[str]:
    """The files the record refers to, and those of messages held for a host (their
    files wait with them, however long the host is away)."""
    rows = conn.execute(
        "SELECT DISTINCT json_extract(j.value, '$.sha256') FROM messages m, "
        "json_each(m.attachments) j WHERE m.attachments != '[]' AND json_valid(m.attachments) "
        "AND json_extract(j.value, '$.sha256') IS NOT NULL "
        "UNION SELECT json_extract(j.value, '$.sha256') FROM held h, "
        "json_each(h.message, '$.attachments') j WHERE json_valid(h.message) "
        "AND json_extract(j.value, '$.sha256') IS NOT NULL"
    ).fetchall()
    return {str(r[0]) for r in rows}


def forget_file_ids(conn: sqlite3.Connection, sha256s: Sequence[str]) -> None:
    for i in range(0, len(sha256s), _IN_CHUNK):
        part = sha256s[i : i + _IN_CHUNK]
        marks = ", ".join("?" * len(part))
        conn.execute(f"DELETE FROM file_ids WHERE sha256 IN ({marks})", part)
