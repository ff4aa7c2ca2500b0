"""The SQLite engine's statements for held messages (``tables.held``, federation)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from roomlink.message.model import Message, utcnow
from roomlink.store.sqlite.queries import stored_time


def hold(conn: sqlite3.Connection, connector: str, room: str,
         messages: Sequence[Message]) -> None:
    now = stored_time(utcnow())
    conn.executemany(
        "INSERT INTO held (message_id, connector, room, message, held_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
        [(m.id, connector, room, m.model_dump_json(), now) for m in messages],
    )


def held(conn: sqlite3.Connection, connector: str, after: int, limit: int
         ) -> list[tuple[int, str, Message]]:
    rows = conn.execute(
        "SELECT id, room, message FROM held WHERE connector = ? AND id > ? ORDER BY id LIMIT ?",
        (connector, after, limit),
    ).fetchall()
    return [(int(r[0]), str(r[1]), Message.model_validate_json(r[2])) for r in rows]


def release(conn: sqlite3.Connection, message_ids: Sequence[str]) -> None:
    conn.executemany("DELETE FROM held WHERE message_id = ?", [(i,) for i in message_ids])


def held_message(conn: sqlite3.Connection, message_id: str) -> Message | None:
    row = conn.execute("SELECT message FROM held WHERE message_id = ?",
                       (message_id,)).fetchone()
    return None if row is None else Message.model_validate_json(row[0])


def held_counts(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT connector, count(*) FROM held GROUP BY connector").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
