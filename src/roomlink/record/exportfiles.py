"""Copying a record's files beside its export (``history export --files DIR``).

Each kept file a written record refers to goes to ``DIR/<first 16 hex digits of its
sha256>/<its cleaned name>``: the folder keeps two files with the same name apart and
the same file named twice together, the name is the one people saw (cleaned again, so
an old record's name cannot climb out of ``DIR``). Copies stream a chunk at a time
through a temporary name, so a copy is whole or absent; one already there with the
right size is kept. A file the store no longer holds is listed in ``missing``.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

from roomlink.message.filenames import clean_filename
from roomlink.message.model import Attachment
from roomlink.store import Store

PREFIX = 16  # hex digits of the sha256 naming a file's folder
_B64_READ = 57 * 1024  # bytes read at a time: 1024 base64 lines of 76 characters
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$&-^_.+")


class FileCopier:
    """The files folder of one export; ``link`` is how the export reaches it (a path
    relative to where the export is written)."""

    def __init__(self, folder: Path, link: str) -> None:
        self.folder = folder
        self.link = link.rstrip("/") or "."
        self.copied: dict[tuple[str, str], Path] = {}  # (sha256, name) -> the copy
        self.missing: list[Attachment] = []

    @staticmethod
    def _key(att: Attachment) -> tuple[str, str] | None:
        return None if not att.sha256 else (att.sha256, clean_filename(att.name))

    def path_of(self, att: Attachment) -> Path | None:
        key = self._key(att)
        return None if key is None else self.copied.get(key)

    def relative_of(self, att: Attachment) -> str | None:
        """The copy's path relative to the export (for jsonl: a path, not a URL)."""
        key = self._key(att)
        if key is None or key not in self.copied:
            return None
        sha256, name = key
        return f"{self.link}/{sha256[:PREFIX]}/{name}"

    def href_of(self, att: Attachment) -> str | None:
        """The copy as a relative URL (for html, text and mbox)."""
        relative = self.relative_of(att)
        return None if relative is None else quote(relative)

    async def copy(self, store: Store, attachments: Iterable[Attachment]) -> None:
        """Copy the kept files of ``attachments`` not copied yet."""
        for att in attachments:
            key = self._key(att)
            if key is None or key in self.copied:
                continue
            sha256, name = key
            target = self.folder / sha256[:PREFIX] / name
            if not (target.is_file() and target.stat().st_size == att.size):
                try:
                    await _stream_to(store, sha256, target)
                except LookupError:  # the store lost it: verify names it
                    self.missing.append(att)
                    continue
            self.copied[key] = target


async def _stream_to(store: Store, sha256: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name[:200]}.part")
    try:
        # a command, not the daemon: nothing else runs on this loop while it writes
        with open(partial, "wb") as out:  # noqa: ASYNC230
            async for chunk in store.files.read(sha256):
                out.write(chunk)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def base64_lines(path: Path) -> Iterator[str]:
    """The file's bytes as MIME base64 lines (76 characters), a block at a time."""
    with open(path, "rb") as f:
        while block := f.read(_B64_READ):
            encoded = base64.b64encode(block).decode("ascii")
            yield "".join(encoded[i:i + 76] + "\n" for i in range(0, len(encoded), 76))


def media_type(mime: str | None) -> str:
    """``mime`` without parameters when it is a well-formed type, else octet-stream."""
    kind = (mime or "").split(";", 1)[0].strip().lower()
    main, slash, sub = kind.partition("/")
    if slash and main and sub and len(kind) <= 127 and set(main + sub) <= _TYPE_CHARS:
        return kind
    return "application/octet-stream"


def size_text(size: int | None) -> str | None:
    """A size for people: 532 B, 14.2 KiB, 3.1 MiB."""
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # not reached
