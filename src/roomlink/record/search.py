"""Full-text search over a party's record: every word must match.

Each engine searches its own index, both made by the migrations and both holding every
message stored, edits included (an edit is a record with the new text): SQLite an FTS5
table (unicode61: words of every script, case-folded, diacritics removed), PostgreSQL a
GIN index over ``to_tsvector('simple', text)`` ('simple' does not stem, so Russian and
English alike match word for word). See ``Store.search``.
"""

from __future__ import annotations

import re
from datetime import datetime

from roomlink.store import SearchHit, Store

_WORD = re.compile(r"\w+", re.UNICODE)

Hit = SearchHit


class EmptyQuery(ValueError):
    pass


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
    return await store.search(words(query), pipe, author, since, limit)
