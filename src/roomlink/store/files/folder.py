"""Files kept in a folder: ``<root>/<first two hex digits>/<sha256>``.

A file is written to ``<root>/.tmp/`` first, fsync'd, renamed to its digest's name and
the folder fsync'd, so that it appears whole or not at all, even across a ``kill -9``
or a power cut; what a crash left in ``.tmp`` is removed when the folder is opened
(once it is ``STALE_AFTER`` old: another process may be writing there).
The disk work runs in threads, a chunk at a time, so neither the event loop waits for
the disk nor a file is ever whole in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from roomlink.message.model import is_digest
from roomlink.store.files import CHUNK, FileKeeper, FileWriter, MissingFile

STALE_AFTER = 3600.0  # seconds since its last write: a temporary file nobody writes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderFiles(FileKeeper):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)
        self._tmp = root / ".tmp"

    @classmethod
    def open(cls, root: str | Path) -> FolderFiles:
        keeper = FolderFiles(Path(root))
        if not keeper._tmp.is_dir():  # made by the first write: opening writes nothing
            return keeper
        # a write a crash interrupted; never one going on in another process (a daemon
        # while a `history` command opens the same store): that one was written lately
        stale = time.time() - STALE_AFTER
        for leftover in keeper._tmp.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < stale:
                    leftover.unlink()
        return keeper

    def path_of(self, sha256: str) -> Path:
        if not is_digest(sha256):
            raise MissingFile(f"not a file digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256

    async def begin(self) -> FileWriter:
        path = self._tmp / secrets.token_hex(16)

        def create() -> BinaryIO:
            if not self._tmp.is_dir():
                new_root = not self.root.is_dir()
                self._tmp.mkdir(parents=True, exist_ok=True)
                if new_root:  # the folder's own name must survive a power cut too
                    _fsync_dir(self.root.parent)
            return open(path, "xb")

        handle = await asyncio.to_thread(create)
        return _FolderWriter(self, path, handle)

    async def has(self, sha256: str) -> bool:
        try:
            return self.path_of(sha256).is_file()
        except MissingFile:
            return False

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        path = self.path_of(sha256)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise MissingFile(f"file {sha256} is not kept") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            handle.close()

    async def kept(self) -> list[tuple[str, datetime]]:
        def scan() -> list[tuple[str, datetime]]:
            found: list[tuple[str, datetime]] = []
            if not self.root.is_dir():
                return found
            for sub in self.root.iterdir():
                if len(sub.name) != 2 or not sub.is_dir():
                    continue
                for f in sub.iterdir():
                    if is_digest(f.name):
                        mtime = datetime.fromtimestamp(f.stat().st_mtime, UTC)
                        found.append((f.name, mtime))
            return found

        return await asyncio.to_thread(scan)

    async def remove(self, sha256s: Iterable[str], kept_before: datetime) -> list[str]:
        digests = list(sha256s)
        before = kept_before.timestamp()

        def unlink() -> list[str]:
            removed = []
            for sha in digests:
                path = self.path_of(sha)
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:  # else kept again meanwhile
                        path.unlink()
                        removed.append(sha)
            return removed

        return await asyncio.to_thread(unlink)

    async def close(self) -> None:
        pass


class _FolderWriter(FileWriter):
    def __init__(self, keeper: FolderFiles, path: Path, handle: BinaryIO) -> None:
        self._keeper = keeper
        self._path = path
        self._handle = handle
        self._done = False

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._handle.write, chunk)

    async def finish(self, sha256: str) -> None:
        final = self._keeper.path_of(sha256)

        def publish() -> None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            if final.exists():  # kept already (content-addressed): these bytes go
                self._path.unlink()
                os.utime(final)  # kept again now: retention's grace starts again
                return
            made = not final.parent.exists()
            final.parent.mkdir(exist_ok=True)
            if made:
                _fsync_dir(self._keeper.root)
            os.replace(self._path, final)
            _fsync_dir(final.parent)

        await asyncio.to_thread(publish)
        self._done = True

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True

        def drop() -> None:
            self._handle.close()
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

        await asyncio.to_thread(drop)
