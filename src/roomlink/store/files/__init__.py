"""The bytes of a party's files: a small typed component every store provides
(``Store.files``), apart from the message contract because its two kinds do not follow
the engines: a folder (a SQLite party's, beside its database, or any party's that sets
``files: PATH``) or the database itself (a PostgreSQL party's, in chunks).

Files are content-addressed by the hex SHA-256 of their bytes: the same file in many
messages is kept once. Writing streams in chunks into something nobody reads yet (a
temporary file, rows of an open transaction), made durable and then visible under its
digest by :meth:`FileWriter.finish`; :meth:`FileWriter.abort` (or a crash) leaves
nothing. The file ids that download links name are kept by the store itself
(``Store.file_id``), not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Protocol

from roomlink.store.errors import StoreError

CHUNK = 64 * 1024  # bytes per chunk read back


class MissingFile(StoreError, LookupError):
    """No file is kept under this digest."""


class FileWriter(Protocol):
    """One file being written; nobody sees it before :meth:`finish`."""

    async def write(self, chunk: bytes) -> None: ...

    async def finish(self, sha256: str) -> None:
        """Make the bytes written durable (fsync'd) and visible as ``sha256``; when a
        file is already kept under it, drop these bytes instead."""
        ...

    async def abort(self) -> None:
        """Forget what was written (safe to call after finish, and twice)."""
        ...


class FileKeeper(Protocol):
    """Where one party's files are kept."""

    where: str  # for people: the folder, or "the database"

    async def begin(self) -> FileWriter: ...

    async def has(self, sha256: str) -> bool: ...

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The bytes in chunks of at most CHUNK; MissingFile when not kept."""
        ...

    async def kept(self) -> list[tuple[str, datetime]]:
        """Every kept file's digest and when it was kept (for retention)."""
        ...

    async def remove(self, sha256s: Iterable[str], kept_before: datetime) -> list[str]:
        """Remove those of these files last kept before ``kept_before`` (one kept again
        meanwhile stays: a new message refers to it); returns the digests removed."""
        ...

    async def close(self) -> None: ...
