"""files: the bytes of a PostgreSQL party's files, and every party's file ids

``files`` and ``file_chunks`` hold a file kept in the database (a PostgreSQL party's,
unless it sets ``files: PATH``; a SQLite party keeps its files in a folder beside its
database and leaves them empty). ``file_ids`` maps the unguessable id a download link
names to the file's digest.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from roomlink.store.tables import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("kept_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "file_chunks",
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "file_ids",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_file_ids_sha256"),
    )


def downgrade() -> None:
    op.drop_table("file_ids")
    op.drop_table("file_chunks")
    op.drop_table("files")
