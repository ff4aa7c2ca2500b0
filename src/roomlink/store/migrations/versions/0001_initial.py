"""initial schema: messages, outbox, natives, cursors

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("pipe", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("origin_connector", sa.Text, nullable=False),
        sa.Column("origin_room", sa.Text, nullable=False),
        sa.Column("origin_native_id", sa.Text, nullable=True),
        sa.Column("author_name", sa.Text, nullable=False),
        sa.Column("author_id", sa.Text, nullable=True),
        sa.Column("author_party", sa.Text, nullable=False),
        sa.Column("author_platform", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("attachments", sa.Text, nullable=False),
        sa.Column("reply_to", sa.Text, nullable=True),
        sa.Column("target", sa.Text, nullable=True),
        _ts("ts"),
        _ts("recorded_at"),
        sa.UniqueConstraint("id", name="uq_messages_id"),
    )
    op.create_index(
        "ix_messages_origin", "messages", ["origin_connector", "origin_room", "origin_native_id"]
    )
    op.create_index("ix_messages_pipe_seq", "messages", ["pipe", "seq"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("pipe", sa.Text, nullable=False),
        sa.Column("connector", sa.Text, nullable=False),
        sa.Column("room", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("native_id", sa.Text, nullable=True),
        sa.Column("native_ids", sa.Text, nullable=True),
        _ts("created_at"),
        _ts("done_at", nullable=True),
        sa.UniqueConstraint("message_id", "connector", "room", name="uq_outbox_message_room"),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["connector", "room", "id"],
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("ix_outbox_native", "outbox", ["connector", "room", "native_id"])

    op.create_table(
        "natives",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("connector", sa.Text, nullable=False),
        sa.Column("room", sa.Text, nullable=False),
        sa.Column("native_id", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id"), nullable=False),
    )
    op.create_index("ix_natives_lookup", "natives", ["connector", "room", "native_id"])

    op.create_table(
        "cursors",
        sa.Column("connector", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        _ts("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("cursors")
    op.drop_table("natives")
    op.drop_table("outbox")
    op.drop_table("messages")
