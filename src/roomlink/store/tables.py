"""The store's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` must match."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC (naive UTC on SQLite, timestamptz on PG).

    Naive datetimes given to it are taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData()


def _partial_index(name: str, *columns: str, where: str) -> sa.Index:
    """An index of only the rows ``where`` holds for, the same on SQLite and PostgreSQL."""
    condition = sa.text(where)
    return sa.Index(name, *columns, sqlite_where=condition, postgresql_where=condition)


messages = sa.Table(
    "messages",
    metadata,
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
    sa.Column("attachments", sa.Text, nullable=False),  # JSON list of Attachment dicts
    sa.Column("reply_to", sa.Text, nullable=True),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    # the pipe's hash chain after this message and its position in the pipe
    # (roomlink.store.chain); null only on a row added behind roomlink's back
    sa.Column("chain", sa.Text, nullable=True),
    sa.Column("chain_n", sa.Integer, nullable=True),
    sa.UniqueConstraint("id", name="uq_messages_id"),
    # only messages with a platform id (migration 0004): one from IRC adds no entry
    _partial_index("ix_messages_origin", "origin_connector", "origin_room", "origin_native_id",
                   where="origin_native_id IS NOT NULL"),
    sa.Index("ix_messages_pipe_seq", "pipe", "seq"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("pipe", sa.Text, nullable=False),
    sa.Column("connector", sa.Text, nullable=False),
    sa.Column("room", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("native_id", sa.Text, nullable=True),  # the first part's platform id
    sa.Column("native_ids", sa.Text, nullable=True),  # JSON list of every part's platform id
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("done_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("message_id", "connector", "room", name="uq_outbox_message_room"),
    # only pending rows: a delivery leaves this index, and it stays small
    _partial_index("ix_outbox_pending", "connector", "room", "id", where="state = 'pending'"),
    # only copies that have a platform id (migration 0004): a waiting copy adds no entry
    _partial_index("ix_outbox_native", "connector", "room", "native_id",
                   where="native_id IS NOT NULL"),
)

# The platform ids of the second and later parts of a copy split into several posts
# (the first part's is outbox.native_id), for the reverse lookup native id -> message id.
natives = sa.Table(
    "natives",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", sa.Text, nullable=False),
    sa.Column("room", sa.Text, nullable=False),
    sa.Column("native_id", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id"), nullable=False),
    sa.Index("ix_natives_lookup", "connector", "room", "native_id"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("connector", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Where retention cut each pipe: the chain continues from here (roomlink.record.retention)
chain_anchors = sa.Table(
    "chain_anchors",
    metadata,
    sa.Column("pipe", sa.Text, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("head", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),  # the last message removed
    sa.Column("cut_at", UTCDateTime, nullable=False),
)

# The search index lives outside this metadata (an FTS5 table and its shadow tables on
# SQLite, an expression GIN index on PostgreSQL): migration 0002 makes and owns it.
SEARCH_OBJECTS = ("messages_fts", "ix_messages_search")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """For Alembic's autogenerate comparison: leave the search index out."""
    return not (name and name.startswith(SEARCH_OBJECTS))

# -- files (migration 0005) ------------------------------------------------------------

# A file kept in the database (a PostgreSQL party's, store.files.pgchunks): it is visible
# once its row is here; its bytes are its file_chunks, in order of n.
files = sa.Table(
    "files",
    metadata,
    sa.Column("sha256", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("kept_at", UTCDateTime, nullable=False),
)

file_chunks = sa.Table(
    "file_chunks",
    metadata,
    sa.Column("sha256", sa.Text, primary_key=True),  # a temporary key while written
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# The party's unguessable id of each file a link named (every engine, every kind of
# keeping): what /files/{id}/{name} looks up. Never the digest.
file_ids = sa.Table(
    "file_ids",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("sha256", name="uq_file_ids_sha256"),
)

# -- federation (migration 0006) --------------------------------------------------------

# Messages said in this instance's rooms of a conversation another instance hosts: kept
# here until the host has placed them in its order and sent them back (they are then
# recorded like any other message and leave this table). Not part of the record.
held = sa.Table(
    "held",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("connector", sa.Text, nullable=False),
    sa.Column("room", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),  # the Message as JSON
    sa.Column("held_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("message_id", name="uq_held_message_id"),
    sa.Index("ix_held_connector", "connector", "id"),
    # ids never come back after a release: the link sends what is held after an id
    sqlite_autoincrement=True,
)
