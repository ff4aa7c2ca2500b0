"""Every store operation as a plain sync SQLAlchemy Core function of a Connection.

The same functions run on the SQLite thread and, through ``AsyncConnection.run_sync``,
on PostgreSQL. None of them commits: the caller owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from roomlink.model import Attachment, Author, Kind, Message, utcnow
from roomlink.record.chain import GENESIS, canonical, link
from roomlink.store.base import (
    DELIVERED,
    FAILED,
    PENDING,
    OutboxEntry,
    OutboxRow,
    RecordEntry,
    RoomCount,
    UnknownOutboxRow,
)
from roomlink.store.schema import chain_anchors, cursors, messages, natives, outbox

_IN_CHUNK = 500  # ids per IN (...) query; stays far below every driver's parameter limit

_MESSAGE_COLUMNS = tuple(
    c for c in messages.c if c.name not in ("seq", "recorded_at", "chain", "chain_n")
)


def message_to_row(m: Message) -> dict[str, Any]:
    a = m.author
    return {
        "id": m.id,
        "pipe": m.pipe,
        "kind": m.kind.value,
        "origin_connector": m.origin_connector,
        "origin_room": m.origin_room,
        "origin_native_id": m.origin_native_id,
        "author_name": a.name,
        "author_id": a.id,
        "author_party": a.party,
        "author_platform": a.platform,
        "text": m.text,
        "attachments": (
            json.dumps([x.model_dump() for x in m.attachments]) if m.attachments else "[]"
        ),
        "reply_to": m.reply_to,
        "target": m.target,
        "ts": m.ts,
    }


def row_to_message(r: sa.RowMapping) -> Message:
    raw = r["attachments"]
    attachments = tuple(Attachment(**x) for x in json.loads(raw)) if raw != "[]" else ()
    return Message(
        id=r["id"],
        pipe=r["pipe"],
        kind=Kind(r["kind"]),
        origin_connector=r["origin_connector"],
        origin_room=r["origin_room"],
        origin_native_id=r["origin_native_id"],
        author=Author(
            name=r["author_name"],
            id=r["author_id"],
            party=r["author_party"],
            platform=r["author_platform"],
        ),
        text=r["text"],
        attachments=attachments,
        reply_to=r["reply_to"],
        target=r["target"],
        ts=r["ts"],
    )


def _existing_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i : i + _IN_CHUNK]
        found.update(conn.scalars(sa.select(messages.c.id).where(messages.c.id.in_(chunk))))
    return found


def chain_head(conn: Connection, pipe: str) -> tuple[int, str]:
    """(position, chain) of the pipe's last record in this store, or of its anchor."""
    row = conn.execute(
        sa.select(messages.c.chain_n, messages.c.chain)
        .where(messages.c.pipe == pipe)
        .order_by(messages.c.seq.desc())
        .limit(1)
    ).first() or conn.execute(
        sa.select(chain_anchors.c.count, chain_anchors.c.head).where(chain_anchors.c.pipe == pipe)
    ).first()
    return (row[0] or 0, row[1] or GENESIS) if row else (0, GENESIS)


def record(conn: Connection, entries: Sequence[RecordEntry]) -> list[list[OutboxRow]]:
    """Insert new messages and their outbox rows; an already known message id is skipped."""
    seen = _existing_ids(conn, list({e.message.id: None for e in entries}))
    now = utcnow()
    message_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    new: list[bool] = []
    heads: dict[str, tuple[int, str]] = {}
    for e in entries:
        m = e.message
        if m.id in seen:
            new.append(False)
            continue
        seen.add(m.id)
        new.append(True)
        n, head = heads.get(m.pipe) or chain_head(conn, m.pipe)
        head = link(head, canonical(m))
        heads[m.pipe] = (n + 1, head)
        row = message_to_row(m)
        row["recorded_at"] = now
        row["chain"] = head
        row["chain_n"] = n + 1
        message_rows.append(row)
        for ref in e.outbox:
            outbox_rows.append(
                {
                    "message_id": m.id,
                    "pipe": m.pipe,
                    "connector": ref.connector,
                    "room": ref.room,
                    "state": PENDING,
                    "attempts": 0,
                    "created_at": now,
                }
            )
    if message_rows:
        conn.execute(messages.insert(), message_rows)
    ids: list[int] = []
    if outbox_rows:
        stmt = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)
        ids = list(conn.scalars(stmt, outbox_rows))
    result: list[list[OutboxRow]] = []
    it = iter(ids)
    for e, is_new in zip(entries, new, strict=True):
        if not is_new:
            result.append([])
            continue
        result.append(
            [OutboxRow(next(it), e.message, ref.connector, ref.room, 0) for ref in e.outbox]
        )
    return result


def _update_outbox(conn: Connection, outbox_id: int, **values: Any) -> None:
    res = conn.execute(sa.update(outbox).where(outbox.c.id == outbox_id).values(**values))
    if res.rowcount == 0:
        raise UnknownOutboxRow(f"no outbox row {outbox_id}")


def mark_delivered(conn: Connection, outbox_id: int, native_ids: Sequence[str]) -> None:
    native_ids = list(native_ids)
    _update_outbox(
        conn,
        outbox_id,
        state=DELIVERED,
        native_id=native_ids[0] if native_ids else None,
        native_ids=json.dumps(native_ids),
        done_at=utcnow(),
    )
    if len(native_ids) > 1:  # the first part's id is outbox.native_id
        row = conn.execute(
            sa.select(outbox.c.connector, outbox.c.room, outbox.c.message_id).where(
                outbox.c.id == outbox_id
            )
        ).one()
        conn.execute(
            natives.insert(),
            [
                {
                    "connector": row.connector,
                    "room": row.room,
                    "native_id": n,
                    "message_id": row.message_id,
                    "outbox_id": outbox_id,
                }
                for n in native_ids[1:]
            ],
        )


def mark_failed(conn: Connection, outbox_id: int, error: str, attempts: int) -> None:
    _update_outbox(
        conn, outbox_id, state=FAILED, last_error=error, attempts=attempts, done_at=utcnow()
    )


def note_attempt(conn: Connection, outbox_id: int, error: str, attempts: int) -> None:
    _update_outbox(conn, outbox_id, last_error=error, attempts=attempts)


def set_cursor(conn: Connection, connector: str, key: str, value: str) -> None:
    values = {"connector": connector, "key": key, "value": value, "updated_at": utcnow()}
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(cursors)
    conn.execute(
        ins.values(**values).on_conflict_do_update(
            index_elements=[cursors.c.connector, cursors.c.key],
            set_={"value": value, "updated_at": values["updated_at"]},
        )
    )


def get_cursor(conn: Connection, connector: str, key: str) -> str | None:
    return conn.scalar(
        sa.select(cursors.c.value).where(cursors.c.connector == connector, cursors.c.key == key)
    )


def pending(
    conn: Connection, connector: str, room: str, after_id: int, limit: int
) -> list[OutboxRow]:
    stmt = (
        sa.select(
            outbox.c.id.label("ob_id"), outbox.c.attempts.label("ob_attempts"), *_MESSAGE_COLUMNS
        )
        .select_from(outbox.join(messages, messages.c.id == outbox.c.message_id))
        .where(
            outbox.c.connector == connector,
            outbox.c.room == room,
            outbox.c.state == PENDING,
            outbox.c.id > after_id,
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [
        OutboxRow(r[0], row_to_message(r._mapping), connector, room, r[1])
        for r in conn.execute(stmt)
    ]


def native_id(conn: Connection, message_id: str, connector: str, room: str) -> str | None:
    delivered = conn.scalar(
        sa.select(outbox.c.native_id).where(
            outbox.c.message_id == message_id,
            outbox.c.connector == connector,
            outbox.c.room == room,
            outbox.c.state == DELIVERED,
        )
    )
    if delivered is not None:
        return str(delivered)
    return conn.scalar(
        sa.select(messages.c.origin_native_id).where(
            messages.c.id == message_id,
            messages.c.origin_connector == connector,
            messages.c.origin_room == room,
        )
    )


def message_id_for_native(conn: Connection, connector: str, room: str, native: str) -> str | None:
    """The newest message that has ``native`` as its id in that room (original or copy)."""
    said_here = sa.select(messages.c.seq, messages.c.id).where(
        messages.c.origin_connector == connector,
        messages.c.origin_room == room,
        messages.c.origin_native_id == native,
    )
    copies = [
        sa.select(messages.c.seq, messages.c.id)
        .select_from(table.join(messages, messages.c.id == table.c.message_id))
        .where(table.c.connector == connector, table.c.room == room, table.c.native_id == native)
        for table in (outbox, natives)  # a copy's first part, and its later parts
    ]
    found = sa.union_all(said_here, *copies).subquery()
    return conn.scalar(sa.select(found.c.id).order_by(found.c.seq.desc()).limit(1))


def get_message(conn: Connection, message_id: str) -> Message | None:
    row = conn.execute(sa.select(*_MESSAGE_COLUMNS).where(messages.c.id == message_id)).first()
    return None if row is None else row_to_message(row._mapping)


def list_messages(
    conn: Connection, pipe: str | None, after_seq: int, limit: int
) -> list[tuple[int, Message]]:
    stmt = sa.select(messages.c.seq, *_MESSAGE_COLUMNS).where(messages.c.seq > after_seq)
    if pipe is not None:
        stmt = stmt.where(messages.c.pipe == pipe)
    stmt = stmt.order_by(messages.c.seq).limit(limit)
    return [(r[0], row_to_message(r._mapping)) for r in conn.execute(stmt)]


def counts(conn: Connection) -> dict[str, int]:
    out = {"messages": conn.scalar(sa.select(sa.func.count()).select_from(messages)) or 0}
    out |= {PENDING: 0, DELIVERED: 0, FAILED: 0}
    for state, n in conn.execute(
        sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)
    ):
        out[state] = n
    return out


# -- for operators ---------------------------------------------------------------------


def _filters(
    state: str | None, connector: str | None, room: str | None, message_id: str | None
) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    for column, value in ((outbox.c.state, state), (outbox.c.connector, connector),
                          (outbox.c.room, room), (outbox.c.message_id, message_id)):
        if value is not None:
            where.append(column == value)
    return where


def outbox_entries(
    conn: Connection, state: str | None, connector: str | None, room: str | None,
    message_id: str | None, limit: int, newest_first: bool,
) -> list[OutboxEntry]:
    c = outbox.c
    stmt = (
        sa.select(c.id, c.message_id, c.pipe, c.connector, c.room, c.state, c.attempts,
                  c.last_error, c.created_at, c.done_at)
        .where(*_filters(state, connector, room, message_id))
        .order_by(c.id.desc() if newest_first else c.id)
        .limit(limit)
    )
    return [
        OutboxEntry(r.id, r.message_id, r.pipe, r.connector, r.room, r.state, r.attempts,
                    r.last_error, r.created_at, r.done_at)
        for r in conn.execute(stmt)
    ]


def retry_failed(
    conn: Connection, connector: str | None, room: str | None, message_id: str | None
) -> int:
    """Put failed copies back in the queue with a fresh retry budget; their ids keep
    their place in the room's order."""
    res = conn.execute(
        sa.update(outbox)
        .where(*_filters(FAILED, connector, room, message_id))
        .values(state=PENDING, attempts=0, last_error=None, done_at=None)
    )
    return int(res.rowcount)


def room_counts(conn: Connection) -> list[RoomCount]:
    c = outbox.c
    stmt = (
        sa.select(c.pipe, c.connector, c.room, c.state, sa.func.count())
        .where(c.state.in_((PENDING, FAILED)))
        .group_by(c.pipe, c.connector, c.room, c.state)
    )
    return [RoomCount(*r) for r in conn.execute(stmt)]


def pending_heads(conn: Connection) -> dict[tuple[str, str], int]:
    """The oldest pending row of each room (from the partial pending index)."""
    c = outbox.c
    stmt = (
        sa.select(c.connector, c.room, sa.func.min(c.id))
        .where(c.state == PENDING)
        .group_by(c.connector, c.room)
    )
    return {(r[0], r[1]): r[2] for r in conn.execute(stmt)}


def size_bytes(conn: Connection) -> int:
    return int(conn.scalar(sa.text("SELECT pg_database_size(current_database())")) or 0)


def forget(conn: Connection, message_ids: Sequence[str], since: datetime) -> int:
    """As ``sqlite_ops.forget``: undo recording these messages (the newest of the store)
    where it happened at or after ``since``; their outbox rows go too."""
    ids = list(dict.fromkeys(message_ids))
    removed = 0
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i : i + _IN_CHUNK]
        query = sa.select(messages.c.id).where(
            messages.c.id.in_(chunk), messages.c.recorded_at >= since
        )
        found = list(conn.scalars(query))
        if not found:
            continue
        conn.execute(sa.delete(natives).where(natives.c.message_id.in_(found)))
        conn.execute(sa.delete(outbox).where(outbox.c.message_id.in_(found)))
        conn.execute(sa.delete(messages).where(messages.c.id.in_(found)))
        removed += len(found)
    return removed


def delivered_after(
    conn: Connection, connector: str, room: str, message_id: str, limit: int
) -> list[Message] | None:
    """As ``sqlite_ops.delivered_after``: what the room received after ``message_id``."""
    seq = conn.scalar(sa.select(messages.c.seq).where(messages.c.id == message_id))
    if seq is None:
        return None
    stmt = (
        sa.select(*_MESSAGE_COLUMNS)
        .select_from(outbox.join(messages, messages.c.id == outbox.c.message_id))
        .where(
            outbox.c.connector == connector,
            outbox.c.room == room,
            outbox.c.state == DELIVERED,
            messages.c.seq > seq,
        )
        .order_by(messages.c.seq, outbox.c.id)
        .limit(limit)
    )
    return [row_to_message(r._mapping) for r in conn.execute(stmt)]
