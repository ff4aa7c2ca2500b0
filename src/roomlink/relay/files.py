"""``ctx.files``: the core's file service for one connector (``roomlink.connector.files``).

``keep`` streams a received file into the store of every party of every pipe the room
speaks into, all at once and a chunk at a time, hashing as it goes; every store has it
durable (fsync'd) and visible before ``keep`` returns, so before the connector hands the
message in. A file over the limit, a declared size that lies or a stream that breaks
off is refused and every store forgets what it was given: nothing is half-kept. A
``kill -9`` while receiving leaves at most a whole file no message refers to, which
retention removes (``roomlink.record.retention``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import suppress
from urllib.parse import quote

from roomlink.connector.files import FileRefused, Files
from roomlink.message.filenames import clean_filename
from roomlink.message.markup import escape
from roomlink.message.model import Attachment, RoomRef
from roomlink.relay.topology import Topology
from roomlink.store import Store
from roomlink.store.files import FileWriter

DEFAULT_MIME = "application/octet-stream"


class StoreFiles(Files):
    """``ctx.files`` of connector ``connector`` (of ``party``). ``stores`` is the daemon's
    map of every party's store; ``topology`` answers the running one (a reload changes
    it); ``limit`` the connector's own largest file (its ``Limits.max_file_bytes``)."""

    def __init__(
        self, connector: str, party: str, stores: Mapping[str, Store],
        topology: Callable[[], Topology], limit: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.connector = connector
        self.party = party
        self._stores = stores
        self._topology = topology
        self._limit = limit

    def _parties(self, room: str) -> list[str]:
        pipes = self._topology().inbound.get(RoomRef(self.connector, room), [])
        parties = {p for pipe in pipes for p in pipe.parties}
        return sorted(parties | {self.party})

    async def keep(
        self,
        room: str,
        name: str,
        mime: str | None,
        chunks: AsyncIterable[bytes],
        *,
        declared_size: int | None = None,
        max_bytes: int | None = None,
    ) -> Attachment:
        limits = [x for x in (max_bytes, self._limit()) if x is not None]
        limit = min(limits) if limits else None
        clean = clean_filename(name)
        if declared_size is not None and limit is not None and declared_size > limit:
            raise FileRefused(f"{clean}: {declared_size} bytes is over the limit of {limit}")
        stores = [self._stores[p] for p in self._parties(room) if p in self._stores]
        writers: list[FileWriter] = []
        try:
            for store in stores:
                writers.append(await store.files.begin())
            digest, size = await _stream(chunks, writers, limit, declared_size, clean)
            await _all(w.finish(digest) for w in writers)
        except BaseException:
            with suppress(Exception):
                await asyncio.shield(asyncio.gather(*(w.abort() for w in writers),
                                                    return_exceptions=True))
            raise
        return Attachment(name=clean, mime=(mime or DEFAULT_MIME).strip() or DEFAULT_MIME,
                          size=size, sha256=digest)

    async def has(self, room: str, sha256: str) -> bool:
        stores = [self._stores[p] for p in self._parties(room) if p in self._stores]
        for store in stores:
            if not await store.files.has(sha256):
                return False
        return bool(stores)

    def open(self, attachment: Attachment) -> AsyncIterator[bytes]:
        if not attachment.sha256:
            raise FileRefused(f"{attachment.name}: its bytes are not kept")
        return self._stores[self.party].files.read(attachment.sha256)

    async def find(self, file_id: str) -> str | None:
        store = self._stores[self.party]
        sha256 = await store.file_by_id(file_id)
        return sha256 if sha256 is not None and await store.files.has(sha256) else None

    async def file_id(self, attachment: Attachment) -> str:
        if not attachment.sha256:
            raise FileRefused(f"{attachment.name}: its bytes are not kept")
        return await self._stores[self.party].file_id(attachment.sha256)


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Await every call to its end (none left running in a thread behind an abort),
    then raise the first failure."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _stream(
    chunks: AsyncIterable[bytes], writers: list[FileWriter], limit: int | None,
    declared: int | None, name: str,
) -> tuple[str, int]:
    """Write ``chunks`` to every writer; (hex SHA-256, size) of what was written."""
    hasher = hashlib.sha256()
    size = 0
    source = aiter(chunks)
    while True:
        try:
            chunk = await anext(source)
        except StopAsyncIteration:
            break
        except FileRefused:
            raise
        except Exception as e:  # the platform's or client's stream broke off
            raise FileRefused(f"{name}: the transfer broke off ({type(e).__name__})") from e
        if not chunk:
            continue
        size += len(chunk)
        if limit is not None and size > limit:
            raise FileRefused(f"{name}: over the limit of {limit} bytes")
        if declared is not None and size > declared:
            raise FileRefused(f"{name}: longer than the {declared} bytes declared")
        hasher.update(chunk)
        # a store's failure (StoreError) is not the file's fault: it propagates
        await _all(w.write(chunk) for w in writers)
    if declared is not None and size != declared:
        raise FileRefused(f"{name}: {size} bytes received of the {declared} declared")
    return hasher.hexdigest(), size


# -- files a destination does not post natively: a line of text each ------------------


def human_size(size: int | None) -> str:
    """``2.4 MiB``, ``512 bytes``; ``size unknown`` for None."""
    if size is None:
        return "size unknown"
    if size < 1024:
        return f"{size} byte{'' if size == 1 else 's'}"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def file_line(a: Attachment, link: str | None) -> str:
    """The canonical text line that stands for a file not posted natively:
    ``[file: NAME (TYPE, SIZE)]``, then the download link or the note saying why the
    bytes were not kept."""
    name = clean_filename(a.name)
    line = escape(f"[file: {name} ({a.mime or DEFAULT_MIME}, {human_size(a.size)})]")
    if link is not None:
        line += f" <{link}>"
    elif a.note:
        line += " " + escape(f"({a.note})")
    return line


def file_link(files_url: str | None, file_id: str, name: str | None) -> str | None:
    """``{files_url}/{file_id}/{NAME}`` (the admin server's ``/files/...``), or None."""
    if not files_url:
        return None
    return f"{files_url.rstrip('/')}/{file_id}/{quote(clean_filename(name), safe='')}"
