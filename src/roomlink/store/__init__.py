"""Per-party stores: every message of the party's pipes, its outbox, its cursors.

``sqlite:///PATH`` (default, one dedicated thread) or ``postgresql://...`` (asyncpg).
Writes are group-committed by one writer task per store; see ``store.py``.
"""

from roomlink.store.base import (
    OutboxEntry,
    OutboxRow,
    RecordEntry,
    RoomCount,
    StoreError,
    UnknownOutboxRow,
)
from roomlink.store.store import Store, open_store

__all__ = [
    "OutboxEntry",
    "OutboxRow",
    "RecordEntry",
    "RoomCount",
    "Store",
    "StoreError",
    "UnknownOutboxRow",
    "open_store",
]
