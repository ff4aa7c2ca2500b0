"""index platform ids only where there is one (messages and outbox)

``ix_outbox_native`` and ``ix_messages_origin`` serve the lookup platform id -> message
(a reply or an edit said on a platform), yet they also held an entry for every row
without a platform id: each copy still waiting (its ``native_id`` is NULL until it is
delivered) and each message from a platform that has no ids (IRC). Recording such a row
wrote that entry, and a delivery mark moved it: about one page more per transaction, of
the seven or eight a relayed message writes to the WAL (bench/README.md). A lookup by
``native_id = ?`` never wants a NULL, so both databases use the partial indexes for it
as before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# index, table, columns (the last one is the platform id, which may be NULL)
_INDEXES = (
    ("ix_outbox_native", "outbox", ["connector", "room", "native_id"]),
    ("ix_messages_origin", "messages", ["origin_connector", "origin_room", "origin_native_id"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        where = sa.text(f"{columns[-1]} IS NOT NULL")
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, table, columns in _INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
