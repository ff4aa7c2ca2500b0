"""held: messages on their way to the instance that hosts their conversation

A message said in a room of a conversation hosted by another roomlink instance (the
federation link, README "Federation") is kept here, durably, before its platform is
told it arrived; it leaves when the host has placed it and it is recorded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from roomlink.store.tables import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("connector", sa.Text, nullable=False),
        sa.Column("room", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("held_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("message_id", name="uq_held_message_id"),
        # ids never come back after a release: the link sends what is held after an id
        sqlite_autoincrement=True,
    )
    op.create_index("ix_held_connector", "held", ["connector", "id"])


def downgrade() -> None:
    op.drop_index("ix_held_connector", table_name="held")
    op.drop_table("held")
