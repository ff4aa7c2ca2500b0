"""SQLite: index for search after the commit, in batches, instead of by trigger

FTS5 writes a new index segment in every transaction that adds to it, which made the
search index the costliest part of recording one message (bench/README.md). Messages are
now indexed by the store's indexer a moment after they are recorded, many per
transaction (roomlink.store.sqlite.queries.index_pending), and a search first indexes what is
still waiting, so it sees every message recorded.

``messages_fts_state.indexed_seq``: every message up to this seq is in the index, none
after it. The delete and update triggers touch the index only for indexed rows, and a
delete lowers the mark to the newest seq left whenever it is above it (SQLite gives the
seq of removed newest rows to the next messages, which must then be indexed).
PostgreSQL keeps its GIN index (its pending list already batches).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXED = "(SELECT indexed_seq FROM messages_fts_state)"
_TOP = "(SELECT coalesce(max(seq), 0) FROM messages)"

UPGRADE = (
    "CREATE TABLE messages_fts_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "indexed_seq INTEGER NOT NULL)",
    "INSERT INTO messages_fts_state (id, indexed_seq) "
    "SELECT 1, coalesce(max(seq), 0) FROM messages",
    "DROP TRIGGER messages_fts_ai",
    "DROP TRIGGER messages_fts_ad",
    "DROP TRIGGER messages_fts_au",
    "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) "
    f"SELECT 'delete', old.seq, old.text WHERE old.seq <= {_INDEXED}; "
    f"UPDATE messages_fts_state SET indexed_seq = {_TOP} WHERE indexed_seq > {_TOP}; END",
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF seq, text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) "
    f"SELECT 'delete', old.seq, old.text WHERE old.seq <= {_INDEXED}; "
    "INSERT INTO messages_fts(rowid, text) "
    f"SELECT new.seq, new.text WHERE new.seq <= {_INDEXED}; END",
)

# Back to 0002's triggers (its SQLITE_FTS after the table itself), then a full rebuild,
# since rows recorded after indexed_seq are not in the index yet.
_V0002 = importlib.import_module("roomlink.store.migrations.versions.0002_record")
DOWNGRADE = (
    "DROP TRIGGER messages_fts_ad",
    "DROP TRIGGER messages_fts_au",
    "DROP TABLE messages_fts_state",
    *_V0002.SQLITE_FTS[1:],
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for stmt in UPGRADE:
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for stmt in DOWNGRADE:
            op.execute(stmt)
