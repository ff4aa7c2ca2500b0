"""The PostgreSQL engine's statements for held messages (``tables.held``, federation)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from roomlink.message.model import Message, utcnow


async def hold(conn: asyncpg.Connection, connector: str, room: str,
               messages: Sequence[Message]) -> None:
    now = utcnow()
    await conn.executemany(
        "INSERT INTO held (message_id, connector, room, message, held_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING",
        [(m.id, connector, room, m.model_dump_json(), now) for m in messages],
    )


async def held(conn: asyncpg.Connection, connector: str, after: int, limit: int
               ) -> list[tuple[int, str, Message]]:
    rows = await conn.fetch(
        "SELECT id, room, message FROM held WHERE connector = $1 AND id > $2 ORDER BY id "
        "LIMIT $3", connector, after, limit,
    )
    return [(int(r[0]), str(r[1]), Message.model_validate_json(r[2])) for r in rows]


async def release(conn: asyncpg.Connection, message_ids: Sequence[str]) -> None:
    await conn.execute("DELETE FROM held WHERE message_id = ANY($1::text[])", list(message_ids))


async def held_message(conn: asyncpg.Connection, message_id: str) -> Message | None:
    found = await conn.fetchval("SELECT message FROM held WHERE message_id = $1", message_id)
    return None if found is None else Message.model_validate_json(found)


async def held_counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT connector, count(*) FROM held GROUP BY connector")
    return {str(r[0]): int(r[1]) for r in rows}
