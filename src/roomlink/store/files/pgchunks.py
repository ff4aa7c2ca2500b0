"""Files kept in a PostgreSQL party's database: ``file_chunks`` rows of at most
``ROW_BYTES`` each and a ``files`` row that makes a file visible (migration 0005).

A file is written inside one transaction on a connection of its own, under a temporary
key; :meth:`finish` renames its chunks to the digest and adds the ``files`` row in the
same transaction, whose commit waits for the server's flush. An abort, a dropped
connection or a ``kill -9`` rolls it back: nothing half-written is ever seen. Reading
fetches one chunk per query, so a slow download never holds a pooled connection.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import asyncpg

from roomlink.message.model import utcnow
from roomlink.store.files import CHUNK, FileKeeper, FileWriter, MissingFile

ROW_BYTES = CHUNK  # the size of one stored chunk (the last one of a file may be smaller)


class ChunkFiles(FileKeeper):
    where = "the database (table file_chunks)"

    def __init__(self, connect: dict[str, Any], pool: asyncpg.Pool) -> None:
        self._connect = connect
        self._pool = pool

    async def begin(self) -> FileWriter:
        conn = await asyncpg.connect(**self._connect, timeout=10)
        try:
            tx = conn.transaction()
            await tx.start()
        except BaseException:
            await conn.close()
            raise
        return _ChunkWriter(conn, tx)

    async def has(self, sha256: str) -> bool:
        async with self._pool.acquire() as conn:
            found = await conn.fetchval("SELECT 1 FROM files WHERE sha256 = $1", sha256)
        return found is not None

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        if not await self.has(sha256):
            raise MissingFile(f"file {sha256} is not kept")
        n = 0
        while True:
            async with self._pool.acquire() as conn:
                data = await conn.fetchval(
                    "SELECT data FROM file_chunks WHERE sha256 = $1 AND n = $2", sha256, n
                )
            if data is None:
                return
            yield bytes(data)
            n += 1

    async def kept(self) -> list[tuple[str, datetime]]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT sha256, kept_at FROM files")
        return [(r[0], r[1]) for r in rows]

    async def remove(self, sha256s: Iterable[str], kept_before: datetime) -> list[str]:
        digests = list(sha256s)
        if not digests:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            # a file kept again meanwhile (kept_at moved on) stays: a new message has it
            rows = await conn.fetch(
                "DELETE FROM files WHERE sha256 = ANY($1::text[]) AND kept_at < $2 "
                "RETURNING sha256", digests, kept_before,
            )
            removed = [str(r[0]) for r in rows]
            await conn.execute("DELETE FROM file_chunks WHERE sha256 = ANY($1::text[])", removed)
        return removed

    async def close(self) -> None:
        pass


class _ChunkWriter(FileWriter):
    def __init__(self, conn: asyncpg.Connection, tx: Any) -> None:
        self._conn = conn
        self._tx = tx
        self._key = "tmp:" + secrets.token_hex(16)
        self._n = 0
        self._size = 0
        self._buffer = bytearray()
        self._done = False

    async def _flush(self, final: bool) -> None:
        while len(self._buffer) >= ROW_BYTES or (final and self._buffer):
            row = bytes(self._buffer[:ROW_BYTES])
            del self._buffer[:ROW_BYTES]
            await self._conn.execute(
                "INSERT INTO file_chunks (sha256, n, data) VALUES ($1, $2, $3)",
                self._key, self._n, row,
            )
            self._n += 1

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        await self._flush(final=False)

    async def finish(self, sha256: str) -> None:
        try:
            await self._flush(final=True)
            # one file at a time per digest: a second writer of the same bytes waits here
            await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", sha256)
            kept = await self._conn.fetchval("SELECT 1 FROM files WHERE sha256 = $1", sha256)
            if kept is None:
                await self._conn.execute(
                    "UPDATE file_chunks SET sha256 = $1 WHERE sha256 = $2", sha256, self._key
                )
                await self._conn.execute(
                    "INSERT INTO files (sha256, size, kept_at) VALUES ($1, $2, $3)",
                    sha256, self._size, utcnow(),
                )
                await self._tx.commit()
            else:  # kept already: these bytes go; retention's grace starts again
                await self._tx.rollback()
                await self._conn.execute(
                    "UPDATE files SET kept_at = $1 WHERE sha256 = $2", utcnow(), sha256
                )
        except BaseException:
            await self.abort()
            raise
        self._done = True
        await self._conn.close()

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._tx.rollback()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass
        finally:
            if not self._conn.is_closed():
                self._conn.terminate()
