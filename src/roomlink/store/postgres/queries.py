"""The PostgreSQL engine's statements for the message path and operators, but the two hot
writes (``writes``), as coroutines of an asyncpg connection; the record's are in
``record_queries``.

The same results as the SQLite engine's (the contract suite in tests/store runs both): a
daemon whose PostgreSQL stores are current never loads SQLAlchemy, about 21 MiB of its
memory (bench/README.md). Writes run inside the caller's transaction
(``PostgresStore._write_now``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from roomlink.message.model import Message, utcnow
from roomlink.store.columns import COLUMNS, M_COLUMNS, message
from roomlink.store.errors import UnknownOutboxRow
from roomlink.store.postgres.writes import APPEND_NAMESPACE, LOCK_PIPES
from roomlink.store.values import (
    DELIVERED,
    FAILED,
    PENDING,
    OutboxEntry,
    OutboxRow,
    RoomCount,
)


def utc(value: datetime) -> datetime:
    """A time from the server (or the caller) as a timezone-aware UTC datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _message(r: Sequence[Any]) -> Message:
    return message(r, utc(r[14]))


async def _update_outbox(conn: asyncpg.Connection, outbox_id: int, sql: str, *params: Any) -> None:
    found = await conn.fetchval(f"UPDATE outbox SET {sql} WHERE id = $1 RETURNING id",
                                outbox_id, *params)
    if found is None:
        raise UnknownOutboxRow(f"no outbox row {outbox_id}")


async def mark_failed(conn: asyncpg.Connection, outbox_id: int, error: str, attempts: int) -> None:
    await _update_outbox(conn, outbox_id, "state = $2, last_error = $3, attempts = $4, "
                         "done_at = $5", FAILED, error, attempts, utcnow())  # fmt: skip


async def note_attempt(conn: asyncpg.Connection, outbox_id: int, error: str, attempts: int) -> None:
    await _update_outbox(conn, outbox_id, "last_error = $2, attempts = $3", error, attempts)


async def set_cursor(conn: asyncpg.Connection, connector: str, key: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO cursors (connector, key, value, updated_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        connector, key, value, utcnow(),
    )


async def get_cursor(conn: asyncpg.Connection, connector: str, key: str) -> str | None:
    value = await conn.fetchval(
        "SELECT value FROM cursors WHERE connector = $1 AND key = $2", connector, key
    )
    return None if value is None else str(value)


async def pending(
    conn: asyncpg.Connection, connector: str, room: str, after_id: int, limit: int
) -> list[OutboxRow]:
    rows = await conn.fetch(
        f"SELECT o.id, o.attempts, {M_COLUMNS} FROM outbox o "
        "JOIN messages m ON m.id = o.message_id "
        "WHERE o.connector = $1 AND o.room = $2 AND o.state = 'pending' AND o.id > $3 "
        "ORDER BY o.id LIMIT $4",
        connector, room, after_id, limit,
    )
    return [OutboxRow(r[0], _message(r[2:]), connector, room, r[1]) for r in rows]


async def native_id(
    conn: asyncpg.Connection, message_id: str, connector: str, room: str
) -> str | None:
    delivered = await conn.fetchval(
        "SELECT native_id FROM outbox WHERE message_id = $1 AND connector = $2 AND room = $3 "
        "AND state = 'delivered'",
        message_id, connector, room,
    )
    if delivered is not None:
        return str(delivered)
    origin = await conn.fetchval(
        "SELECT origin_native_id FROM messages "
        "WHERE id = $1 AND origin_connector = $2 AND origin_room = $3",
        message_id, connector, room,
    )
    return None if origin is None else str(origin)


async def message_id_for_native(
    conn: asyncpg.Connection, connector: str, room: str, native: str
) -> str | None:
    """The newest message that has ``native`` as its id in that room (original or copy)."""
    found = await conn.fetchval(
        "SELECT id FROM (SELECT seq, id FROM messages WHERE origin_connector = $1 "
        "AND origin_room = $2 AND origin_native_id = $3 "
        "UNION ALL SELECT m.seq, m.id FROM outbox o JOIN messages m ON m.id = o.message_id "
        "WHERE o.connector = $1 AND o.room = $2 AND o.native_id = $3 "
        "UNION ALL SELECT m.seq, m.id FROM natives n JOIN messages m ON m.id = n.message_id "
        "WHERE n.connector = $1 AND n.room = $2 AND n.native_id = $3) found "
        "ORDER BY seq DESC LIMIT 1",
        connector, room, native,
    )
    return None if found is None else str(found)


async def get_message(conn: asyncpg.Connection, message_id: str) -> Message | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM messages WHERE id = $1", message_id)
    return None if row is None else _message(row)


async def list_messages(
    conn: asyncpg.Connection, pipe: str | None, after_seq: int, limit: int
) -> list[tuple[int, Message]]:
    if pipe is None:
        rows = await conn.fetch(f"SELECT seq, {COLUMNS} FROM messages WHERE seq > $1 "
                                "ORDER BY seq LIMIT $2", after_seq, limit)
    else:
        rows = await conn.fetch(f"SELECT seq, {COLUMNS} FROM messages WHERE seq > $1 "
                                "AND pipe = $2 ORDER BY seq LIMIT $3", after_seq, pipe, limit)
    return [(r[0], _message(r[1:])) for r in rows]


async def delivered_after(
    conn: asyncpg.Connection, connector: str, room: str, message_id: str, limit: int
) -> list[Message] | None:
    """What the room received after ``message_id`` (any message this store holds), in
    order; None when the store holds no such message."""
    seq = await conn.fetchval("SELECT seq FROM messages WHERE id = $1", message_id)
    if seq is None:
        return None
    rows = await conn.fetch(
        f"SELECT {M_COLUMNS} FROM outbox o JOIN messages m ON m.id = o.message_id "
        "WHERE o.connector = $1 AND o.room = $2 AND o.state = 'delivered' AND m.seq > $3 "
        "ORDER BY m.seq, o.id LIMIT $4",
        connector, room, seq, limit,
    )
    return [_message(r) for r in rows]


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    out = {"messages": int(await conn.fetchval("SELECT count(*) FROM messages"))}
    out |= {PENDING: 0, DELIVERED: 0, FAILED: 0}
    for state, n in await conn.fetch("SELECT state, count(*) FROM outbox GROUP BY state"):
        out[state] = n
    return out


# -- for operators ---------------------------------------------------------------------


def _filters(
    state: str | None, connector: str | None, room: str | None, message_id: str | None
) -> tuple[str, list[Any]]:
    where, params = ["true"], []
    for column, value in (("state", state), ("connector", connector), ("room", room),
                          ("message_id", message_id)):
        if value is not None:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    return " AND ".join(where), params


async def outbox_entries(
    conn: asyncpg.Connection, state: str | None, connector: str | None, room: str | None,
    message_id: str | None, limit: int, newest_first: bool,
) -> list[OutboxEntry]:
    where, params = _filters(state, connector, room, message_id)
    order = "DESC" if newest_first else "ASC"
    rows = await conn.fetch(
        "SELECT id, message_id, pipe, connector, room, state, attempts, last_error, "
        f"created_at, done_at FROM outbox WHERE {where} ORDER BY id {order} "
        f"LIMIT ${len(params) + 1}",
        *params, limit,
    )
    return [
        OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], utc(r[8]),
                    None if r[9] is None else utc(r[9]))
        for r in rows
    ]


async def retry_failed(
    conn: asyncpg.Connection, connector: str | None, room: str | None, message_id: str | None
) -> int:
    """Put failed copies back in the queue with a fresh retry budget; their ids keep
    their place in the room's order."""
    where, params = _filters(FAILED, connector, room, message_id)
    status = await conn.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, last_error = NULL, done_at = NULL "
        f"WHERE {where}", *params,
    )
    return int(status.split()[-1])  # "UPDATE <count>"


async def room_counts(conn: asyncpg.Connection) -> list[RoomCount]:
    rows = await conn.fetch(
        "SELECT pipe, connector, room, state, count(*) FROM outbox "
        "WHERE state IN ('pending', 'failed') GROUP BY pipe, connector, room, state"
    )
    return [RoomCount(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def pending_heads(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    """The oldest pending row of each room (from the partial pending index)."""
    rows = await conn.fetch(
        "SELECT connector, room, min(id) FROM outbox WHERE state = 'pending' "
        "GROUP BY connector, room"
    )
    return {(r[0], r[1]): r[2] for r in rows}


async def size_bytes(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_database_size(current_database())") or 0)


# a row of the pipes after the first of those to take back that is not one of them
_CHAINED_ON = (
    "SELECT EXISTS (SELECT 1 FROM messages WHERE pipe = ANY($1::text[]) AND seq > $2 "
    "AND NOT id = ANY($3::text[]))"
)


async def forget(conn: asyncpg.Connection, message_ids: Sequence[str], since: datetime) -> int:
    """Undo appending these messages (the newest of the store) where it happened at or
    after ``since``; their outbox rows go too. The engine forgets the chain heads it
    remembers after every such write."""
    ids = list(dict.fromkeys(message_ids))
    pipes = [r[0] for r in await conn.fetch(
        "SELECT DISTINCT pipe FROM messages WHERE id = ANY($1::text[])", ids)]
    await conn.execute(LOCK_PIPES, APPEND_NAMESPACE, pipes)  # replicas' appends wait
    rows = await conn.fetch(
        "SELECT id, seq FROM messages WHERE id = ANY($1::text[]) AND recorded_at >= $2",
        ids, utc(since),
    )  # fmt: skip
    found = [r[0] for r in rows]
    if found and await conn.fetchval(_CHAINED_ON, pipes, min(r[1] for r in rows), found):
        return 0  # another replica chained on them: they are its record's now, and stay
    if found:
        for table, column in (("natives", "message_id"), ("outbox", "message_id"),
                              ("messages", "id")):
            await conn.execute(f"DELETE FROM {table} WHERE {column} = ANY($1::text[])", found)
    return len(found)
