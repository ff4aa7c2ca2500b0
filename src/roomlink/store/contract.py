"""The store contract: every operation a party's store offers, with its types.

Each engine implements all of it in its own package, ``sqlite`` (one ``sqlite3``
connection on the event loop) and ``postgres`` (asyncpg, with its group-committing write
queue), and subclasses :class:`Store` explicitly: mypy then refuses to build an engine
that misses an operation or types one differently (``opening.open_store`` builds both).
Nothing outside an engine sees a connection or SQL; the migrations (``migrate``) are the
only other code that touches the tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from roomlink.message.model import Message
from roomlink.store.files import FileKeeper
from roomlink.store.values import (
    Anchor,
    NewMessage,
    OutboxEntry,
    OutboxRow,
    PipeHead,
    RecordRow,
    RoomCount,
    SearchHit,
)

# what retention's check is given: (count, head) where the pipe's chain stands before the
# rows, and the rows; it returns (count, head) after them, or raises to cut nothing
PrefixCheck = Callable[[tuple[int, str], Sequence[RecordRow]], tuple[int, str]]


class Store(Protocol):
    """One party's store; every method is coroutine-safe. A failure of the database is
    a ``StoreError`` whose text holds no SQL parameters (``errors.describe``)."""

    party: str
    url_for_display: str  # the URL with its password hidden
    files: FileKeeper  # the bytes of the party's files (``roomlink.store.files``)

    # -- the message path: writes ---------------------------------------------------------

    def start_append(self, entries: Sequence[NewMessage]) -> asyncio.Future[list[list[OutboxRow]]]:
        """:meth:`append`, begun now: a future of its result (already done on SQLite), so
        that a caller can write to several stores at once without a task for each."""
        ...

    def start_append_at(
        self, entries: Sequence[NewMessage], expect: Mapping[str, tuple[int, str]]
    ) -> asyncio.Future[list[list[OutboxRow]]]:
        """:meth:`start_append`, conditional (replicas): atomically, only while each pipe
        of ``expect`` stands at that (position, chain head) in this store, else
        ``HeadMoved`` and nothing stored. Serialized with every other append and
        take-back of the pipe in this store."""
        ...

    async def pipe_heads(self, pipes: Sequence[str]) -> dict[str, PipeHead]:
        """Where each pipe stands in this store now, in one cheap read."""
        ...

    async def append(self, entries: Sequence[NewMessage]) -> list[list[OutboxRow]]:
        """Store messages, chained on their pipes, and their outbox rows in one
        transaction. An entry whose message id is already stored (or earlier in the same
        call) inserts nothing and gets ``[]``; every other entry gets its new outbox rows,
        in order."""
        ...

    async def forget(self, message_ids: Sequence[str], since: datetime) -> int:
        """Undo appending these messages where it happened at or after ``since`` (they
        must be the newest in this store): how a batch another store refused is taken
        back. Returns how many were removed."""
        ...

    async def mark_delivered(self, outbox_id: int, native_ids: Sequence[str]) -> None:
        """The copy is in its room, as these platform ids (UnknownOutboxRow if no row)."""
        ...

    async def mark_failed(self, outbox_id: int, error: str, attempts: int) -> None: ...

    async def note_attempt(self, outbox_id: int, error: str, attempts: int) -> None: ...

    async def set_cursor(self, connector: str, key: str, value: str) -> None: ...

    async def retry_failed(
        self, connector: str | None = None, room: str | None = None,
        message_id: str | None = None,
    ) -> int:
        """Make failed copies pending again (fresh retry budget); return how many."""
        ...

    # -- the message path: reads ----------------------------------------------------------

    async def pending(
        self, connector: str, room: str, after_id: int = 0, limit: int = 256
    ) -> list[OutboxRow]:
        """The room's pending copies after ``after_id``, in delivery order."""
        ...

    async def native_id(self, message_id: str, connector: str, room: str) -> str | None:
        """The platform id the copy of ``message_id`` got in that room (or had there)."""
        ...

    async def message_id_for_native(self, connector: str, room: str, native_id: str) -> str | None:
        """The newest message that has ``native_id`` as its id in that room."""
        ...

    async def get_cursor(self, connector: str, key: str) -> str | None: ...

    async def get_message(self, message_id: str) -> Message | None: ...

    # -- held for the instance that hosts a conversation (federation) --------------------

    async def hold(self, connector: str, room: str, messages: Sequence[Message]) -> None:
        """Keep messages said here until the instance hosting their conversation (behind
        ``connector``'s ``room``) placed them; an id held already is kept once."""
        ...

    async def held(self, connector: str, after: int = 0, limit: int = 256
                   ) -> list[tuple[int, str, Message]]:
        """(held id, room, message) held for ``connector`` after ``after``, oldest first."""
        ...

    async def release(self, message_ids: Sequence[str]) -> None:
        """These messages are placed (or refused by the host): hold them no longer."""
        ...

    async def held_message(self, message_id: str) -> Message | None:
        """A message held (not yet placed) by its id."""
        ...

    async def held_counts(self) -> dict[str, int]:
        """connector -> messages held for it."""
        ...

    async def delivered_after(
        self, connector: str, room: str, message_id: str, limit: int = 1000
    ) -> list[Message] | None:
        """What the room got after ``message_id``, in order; None if that id is unknown."""
        ...

    async def messages(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Message]]:
        """Stored messages (of one pipe) after ``after_seq``, as (seq, message)."""
        ...

    # -- for operators (the outbox commands, the status page) -----------------------------

    async def counts(self) -> dict[str, int]:
        """"messages", and outbox rows per state."""
        ...

    async def outbox_entries(
        self, state: str | None = None, connector: str | None = None, room: str | None = None,
        message_id: str | None = None, limit: int = 1000, newest_first: bool = False,
    ) -> list[OutboxEntry]:
        """Copies in outbox order (oldest first unless ``newest_first``), filtered."""
        ...

    async def room_counts(self) -> list[RoomCount]:
        """Pending and failed copies per pipe and room."""
        ...

    async def pending_heads(self) -> dict[tuple[str, str], int]:
        """(connector, room) -> the id of its oldest pending copy."""
        ...

    async def size_bytes(self) -> int: ...

    # -- the party's record (roomlink.record) ---------------------------------------------

    async def pipes(self) -> list[str]:
        """Every pipe with records or a retention anchor, sorted."""
        ...

    async def anchors(self) -> dict[str, Anchor]:
        """Each cut pipe's retention anchor."""
        ...

    async def record_size(self, pipe: str | None = None) -> int:
        """How many messages are stored (of one pipe)."""
        ...

    async def record_row(self, message_id: str) -> RecordRow | None: ...

    async def record_page(
        self, pipe: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[RecordRow]:
        """Rows (of one pipe) after ``after_seq``, in seq order: the record's order."""
        ...

    async def record_tail(self, pipe: str, limit: int) -> list[RecordRow]:
        """The pipe's newest ``limit`` rows, in seq order (the oldest of them first): what
        the start's repair compares across the parties' stores (``relay.repair``)."""
        ...

    async def chain_heads(self) -> dict[str, tuple[int, str]]:
        """Each pipe's stored (position, chain head): its last row's, else its anchor's.
        Cheap and not verified (``roomlink.record.verify`` recomputes)."""
        ...

    async def search(
        self, words: Sequence[str], pipe: str | None = None, author: str | None = None,
        since: datetime | None = None, limit: int = 50,
    ) -> list[SearchHit]:
        """The newest ``limit`` messages holding every one of ``words`` (matched as
        words, never as query syntax), of that pipe and author, from ``since`` on."""
        ...

    async def cut_prefix(
        self, pipe: str, cutoff: datetime, limit: int, check: PrefixCheck
    ) -> int:
        """Retention, in one write transaction: take the pipe's oldest ``limit`` rows
        stored before ``cutoff`` that come before its first row with a pending copy and
        its first row stored since; when ``check`` accepts them, remove them with their
        done outbox rows and keep (count, head) as the pipe's anchor. Returns how many."""
        ...

    # -- files (their bytes: ``files``) ----------------------------------------------------

    async def file_id(self, sha256: str) -> str:
        """The party's unguessable id of the file (``secrets.token_urlsafe``, 128 bits or
        more, never the digest), minted and kept on first use."""
        ...

    async def file_by_id(self, file_id: str) -> str | None:
        """The digest of the file this id names, or None."""
        ...

    async def file_refs(self) -> set[str]:
        """The digest of every file a kept message refers to."""
        ...

    async def forget_file_ids(self, sha256s: Sequence[str]) -> None:
        """Remove the ids of these files (retention removed the files)."""
        ...

    async def close(self) -> None:
        """Finish every write begun, then release connections and threads."""
        ...
