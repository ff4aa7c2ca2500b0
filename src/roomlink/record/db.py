"""The record's own SQL, on any store connection: sqlite3, asyncpg (PostgreSQL's reads)
or SQLAlchemy Core (PostgreSQL's writes through ``Store.write_with``).

The SQL takes ``:name`` parameters; this module evens out the rest (parameter style, row
shape, timestamps).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from roomlink.message.model import Attachment, Author, Kind, Message
from roomlink.store import Store

COLUMNS = (
    "seq, id, pipe, kind, origin_connector, origin_room, origin_native_id, author_name, "
    "author_id, author_party, author_platform, text, attachments, reply_to, target, ts, "
    "chain, chain_n"
)
_TIMES = ("ts", "recorded_at", "cut_at")
PAGE = 1000

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where retention cut a pipe: the chain after ``count`` records was ``head``."""

    pipe: str
    count: int
    head: str
    message_id: str
    cut_at: datetime


def _time(value: Any) -> Any:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")  # :name, but not a ::type cast


def _positional(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` parameters as asyncpg's ``$1``, ``$2``, ...; a name used twice is one."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"

    return _NAMED.sub(number, sql), [params[n] for n in names]


def _times(rows: list[Row]) -> list[Row]:
    for r in rows:
        for k in _TIMES:
            if k in r:
                r[k] = _time(r[k])
    return rows


class Db:
    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def param(self, value: Any) -> Any:
        if isinstance(value, datetime) and self.dialect == "sqlite":
            # the format SQLAlchemy and sqlite_ops store: naive UTC, 6 digits
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def rows(self, sql: str, **params: Any) -> Any:
        """The rows as dicts; on an asyncpg connection a coroutine of them (the store's
        read awaits it)."""
        p = {k: self.param(v) for k, v in params.items()}
        if isinstance(self.conn, sqlite3.Connection):
            cur = self.conn.execute(sql, p)
            names = [d[0] for d in cur.description]
            return _times([dict(zip(names, r, strict=True)) for r in cur.fetchall()])
        sa = sys.modules.get("sqlalchemy")  # loaded only for a write_with on PostgreSQL
        if sa is not None and isinstance(self.conn, sa.Connection):
            return _times([dict(r) for r in self.conn.execute(sa.text(sql), p).mappings()])
        return self._fetch(*_positional(sql, p))

    async def _fetch(self, sql: str, args: list[Any]) -> list[Row]:
        return _times([dict(r) for r in await self.conn.fetch(sql, *args)])

    def execute(self, sql: str, **params: Any) -> int:
        p = {k: self.param(v) for k, v in params.items()}
        if isinstance(self.conn, sqlite3.Connection):
            return self.conn.execute(sql, p).rowcount
        import sqlalchemy as sa

        return int(self.conn.execute(sa.text(sql), p).rowcount)


async def read(store: Store, sql: str, **params: Any) -> list[Row]:
    rows: list[Row] = await store.read_with(lambda c: Db(c, store.dialect).rows(sql, **params))
    return rows


async def anchors(store: Store) -> dict[str, Anchor]:
    rows = await read(store, "SELECT pipe, count, head, message_id, cut_at FROM chain_anchors")
    return {r["pipe"]: Anchor(**r) for r in rows}


async def pipes(store: Store) -> list[str]:
    rows = await read(
        store, "SELECT pipe FROM messages UNION SELECT pipe FROM chain_anchors ORDER BY pipe"
    )
    return [r["pipe"] for r in rows]


async def count(store: Store, pipe: str | None) -> int:
    if pipe is None:
        rows = await read(store, "SELECT count(*) AS n FROM messages")
    else:
        rows = await read(store, "SELECT count(*) AS n FROM messages WHERE pipe = :p", p=pipe)
    return int(rows[0]["n"])


async def find(store: Store, message_id: str) -> Row | None:
    rows = await read(store, f"SELECT {COLUMNS} FROM messages WHERE id = :i", i=message_id)
    return rows[0] if rows else None


async def stream(store: Store, pipe: str | None = None) -> AsyncIterator[Row]:
    """Every row (of one pipe) in seq order, a page at a time: bounded memory."""
    where = "seq > :a" + ("" if pipe is None else " AND pipe = :p")
    sql = f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY seq LIMIT {PAGE}"
    params: dict[str, Any] = {"a": 0} if pipe is None else {"a": 0, "p": pipe}
    while True:
        page = await read(store, sql, **params)
        for row in page:
            yield row
        if len(page) < PAGE:
            return
        params["a"] = page[-1]["seq"]


def to_message(r: Row) -> Message:
    raw = r["attachments"]
    attachments = tuple(Attachment(**x) for x in json.loads(raw)) if raw and raw != "[]" else ()
    return Message.model_construct(
        id=r["id"], pipe=r["pipe"], kind=Kind(r["kind"]), origin_connector=r["origin_connector"],
        origin_room=r["origin_room"], origin_native_id=r["origin_native_id"],
        author=Author.model_construct(
            name=r["author_name"], id=r["author_id"], party=r["author_party"],
            platform=r["author_platform"],
        ),
        text=r["text"], attachments=attachments, reply_to=r["reply_to"], target=r["target"],
        ts=r["ts"],
    )  # fmt: skip


async def heads(store: Store) -> dict[str, tuple[int, str]]:
    """Each pipe's stored position and chain head (its last record's, else its anchor's):
    what a status page shows. Cheap and not verified: ``verify`` recomputes."""
    found = {a.pipe: (a.count, a.head) for a in (await anchors(store)).values()}
    rows = await read(
        store,
        "SELECT m.pipe, m.chain_n, m.chain FROM messages m JOIN (SELECT pipe, max(seq) AS s "
        "FROM messages GROUP BY pipe) last ON m.seq = last.s",
    )
    for r in rows:
        found[r["pipe"]] = (r["chain_n"] or 0, r["chain"] or "")
    return found
