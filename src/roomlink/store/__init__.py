"""Per-party stores: every message of the party's pipes, its outbox, its cursors, and the
reads and writes of the party's record.

This package owns the store contract (``contract.Store``, every operation typed, the
values it passes in ``values``), its two engines (``sqlite``: one ``sqlite3``
connection on the event loop; ``postgres``: asyncpg with a group-committing write
queue), each in its own package and each stating its concurrency model, the hash chain
every engine computes while appending (``chain``), the bytes of the party's files
(``files``: a folder, or chunks in a PostgreSQL database; every store has one as
``Store.files``), and the migrations (``migrate``, ``migrations``, ``tables``), which
stay apart from the engines. Nothing outside it sees
SQL or a connection. It may import ``roomlink.errors`` and ``roomlink.message`` only.
"""

from roomlink.store.contract import Store
from roomlink.store.errors import StoreError, UnknownOutboxRow
from roomlink.store.opening import open_store
from roomlink.store.values import (
    Anchor,
    NewMessage,
    OutboxEntry,
    OutboxRow,
    RecordRow,
    RoomCount,
    SearchHit,
)

__all__ = [
    "Anchor",
    "NewMessage",
    "OutboxEntry",
    "OutboxRow",
    "RecordRow",
    "RoomCount",
    "SearchHit",
    "Store",
    "StoreError",
    "UnknownOutboxRow",
    "open_store",
]
