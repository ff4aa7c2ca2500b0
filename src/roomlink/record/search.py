"""Full-text search over a party's record.

SQLite: the FTS5 table ``messages_fts`` (unicode61 tokenizer: words of every script,
case-folded, diacritics removed), filled in batches a moment after each commit and
brought up to date before every search (migration 0003). PostgreSQL: a GIN index over
``to_tsvector('simple', text)`` ('simple' does not stem, so Russian and English alike
match word for word). Both made by migration 0002; both see every message recorded,
edits included (an edit is a record with the new text). Every word must match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from roomlink.record import db
from roomlink.store import Store

_WORD = re.compile(r"\w+", re.UNICODE)


class EmptyQuery(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Hit:
    ts: datetime
    author: str
    party: str
    platform: str
    pipe: str
    id: str
    kind: str
    target: str | None
    snippet: str


def words(query: str) -> list[str]:
    found = _WORD.findall(query)
    if not found:
        raise EmptyQuery("nothing to search for: the query has no words")
    return found


async def search(
    store: Store,
    query: str,
    pipe: str | None = None,
    author: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[Hit]:
    """The newest ``limit`` records matching every word of ``query``."""
    terms = words(query)
    params: dict[str, Any] = {"lim": limit}
    where: list[str] = []
    if pipe is not None:
        where.append("m.pipe = :pipe")
        params["pipe"] = pipe
    if author is not None:
        where.append("(lower(m.author_name) = lower(:author) OR m.author_id = :author)")
        params["author"] = author
    if since is not None:
        where.append("m.ts >= :since")
        params["since"] = since
    cols = ("m.ts, m.author_name, m.author_party, m.author_platform, m.pipe, m.id, m.kind, "
            "m.target")
    if store.dialect == "sqlite":
        await store.index_for_search()  # what was recorded in the last moment
        # each word quoted: the user's text is never FTS5 query syntax
        params["q"] = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
        sql = (
            f"SELECT {cols}, snippet(messages_fts, 0, '[', ']', '…', 16) AS snippet "
            "FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid "
            "WHERE messages_fts MATCH :q"
        )
    else:
        params["q"] = " ".join(terms)
        sql = (
            f"SELECT {cols}, ts_headline('simple', m.text, q, "
            "'StartSel=[, StopSel=], MaxWords=24, MinWords=8') AS snippet "
            "FROM messages m, plainto_tsquery('simple', :q) q "
            "WHERE to_tsvector('simple', m.text) @@ q"
        )
    sql += "".join(f" AND {w}" for w in where) + " ORDER BY m.seq DESC LIMIT :lim"
    rows = await db.read(store, sql, **params)
    return [
        Hit(r["ts"], r["author_name"], r["author_party"], r["author_platform"], r["pipe"],
            r["id"], r["kind"], r["target"], r["snippet"])
        for r in rows
    ]  # fmt: skip
