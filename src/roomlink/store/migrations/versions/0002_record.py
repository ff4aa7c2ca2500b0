"""the party's record: per-pipe hash chain, chain anchors, full-text search

Adds messages.chain / messages.chain_n and back-fills them for every existing row in seq
order (roomlink.store.chain, encoding v1); adds chain_anchors (what retention removed);
adds the search index: an FTS5 table kept by triggers on SQLite, a GIN index over
to_tsvector('simple', text) on PostgreSQL ('simple': no stemming, so every language,
Russian included, is searched word for word).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from roomlink.store.chain import GENESIS, canonical_row, link
from roomlink.store.tables import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE = 1000

_messages = sa.table(
    "messages",
    *(
        sa.column(c)
        for c in (
            "seq id pipe kind origin_connector origin_room author_name author_id "
            "author_party author_platform text attachments reply_to target chain chain_n"
        ).split()
    ),
    sa.column("ts", UTCDateTime),
)

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', "
    "content_rowid='seq', tokenize='unicode61 remove_diacritics 2', columnsize=0)",
    "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.seq, new.text); END",
    "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.seq, old.text); "
    "END",
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF seq, text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.seq, old.text); "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.seq, new.text); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)
PG_SEARCH = (
    "CREATE INDEX ix_messages_search ON messages USING gin (to_tsvector('simple', text))"
)


def _backfill(conn: sa.Connection) -> None:
    heads: dict[str, tuple[int, str]] = {}
    after = 0
    while True:
        rows = conn.execute(
            sa.select(_messages).where(_messages.c.seq > after).order_by(_messages.c.seq)
            .limit(_PAGE)
        ).mappings().all()  # fmt: skip
        if not rows:
            return
        updates: list[dict[str, Any]] = []
        for r in rows:
            n, head = heads.get(r["pipe"], (0, GENESIS))
            head = link(head, canonical_row(r))
            heads[r["pipe"]] = (n + 1, head)
            updates.append({"s": r["seq"], "c": head, "n": n + 1})
        conn.execute(
            sa.update(_messages)
            .where(_messages.c.seq == sa.bindparam("s"))
            .values(chain=sa.bindparam("c"), chain_n=sa.bindparam("n")),
            updates,
        )
        after = rows[-1]["seq"]


def upgrade() -> None:
    op.add_column("messages", sa.Column("chain", sa.Text, nullable=True))
    op.add_column("messages", sa.Column("chain_n", sa.Integer, nullable=True))
    op.create_table(
        "chain_anchors",
        sa.Column("pipe", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("head", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("cut_at", UTCDateTime, nullable=False),
    )
    conn = op.get_bind()
    _backfill(conn)
    if conn.dialect.name == "sqlite":
        for stmt in SQLITE_FTS:
            op.execute(stmt)
    else:
        op.execute(PG_SEARCH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("messages_fts_ai", "messages_fts_ad", "messages_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_search")
    op.drop_table("chain_anchors")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("chain_n")
        batch.drop_column("chain")
