"""A jsonl export of a record (``history export --format jsonl``), read back as one side of
a comparison (``history compare --against FILE``): another instance's record, handed over
as a file.

Nothing in the file is trusted: each line's canonical fields are hashed again as they
are, so an edited line differs from the record it claims to be, whatever its ``chain``
value says. Only where the export starts is taken from it (the first line of a pipe:
``position`` and ``previous``, the chain head before it); the comparison checks that
head against the other record's chain at that position, so an edited start differs too.
An export written before those two fields existed starts at position 1.

The file is read a line at a time (bounded memory), once to check that it is an export
and find its pipes, then once per comparison, and again when a message id must be looked
up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from roomlink.message.model import is_digest
from roomlink.store import Anchor, RecordRow
from roomlink.store.chain import GENESIS


class NotAnExport(ValueError):
    """The file is not a jsonl export of a record (or cannot be read)."""


def _text(doc: dict[str, Any], key: str, where: str, optional: bool = False) -> Any:
    value = doc.get(key)
    if isinstance(value, str) or (optional and value is None):
        return value
    raise NotAnExport(f"{where}: {key!r} is not " + ("text or null" if optional else "text"))


def _row(doc: Any, line: int, where: str) -> RecordRow:
    """The record a line holds, as a store would hand it to the comparison."""
    if not isinstance(doc, dict):
        raise NotAnExport(f"{where}: not a JSON object")
    author = doc.get("author")
    if not isinstance(author, dict):
        raise NotAnExport(f"{where}: 'author' is not an object")
    attachments = doc.get("attachments")
    if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
        raise NotAnExport(f"{where}: 'attachments' is not a list of objects")
    try:
        ts = datetime.fromisoformat(_text(doc, "ts", where))
    except ValueError:
        raise NotAnExport(f"{where}: 'ts' is not a time") from None
    position = doc.get("position")
    return RecordRow(
        seq=line, id=_text(doc, "id", where), pipe=_text(doc, "pipe", where),
        kind=_text(doc, "kind", where),
        origin_connector=_text(doc, "origin_connector", where),
        origin_room=_text(doc, "origin_room", where),
        origin_native_id=doc.get("origin_native_id") if isinstance(
            doc.get("origin_native_id"), str) else None,
        author_name=_text(author, "name", where), author_id=_text(author, "id", where, True),
        author_party=_text(author, "party", where),
        author_platform=_text(author, "platform", where),
        text=_text(doc, "text", where), attachments=json.dumps(attachments),
        reply_to=_text(doc, "reply_to", where, True), target=_text(doc, "target", where, True),
        ts=ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC),
        chain=doc["chain"] if isinstance(doc.get("chain"), str) else None,
        chain_n=position if type(position) is int else None,
    )  # fmt: skip


def _start(doc: dict[str, Any], row: RecordRow, where: str) -> Anchor | None:
    """Where the export of ``row``'s pipe starts (None: at position 1, from nothing)."""
    if "position" not in doc and "previous" not in doc:
        return None  # an export written before the fields existed: the whole record
    position, previous = doc.get("position"), doc.get("previous")
    if type(position) is not int or position < 1:
        raise NotAnExport(f"{where}: 'position' is not a position (1, 2, ...)")
    if not isinstance(previous, str) or not is_digest(previous):
        raise NotAnExport(f"{where}: 'previous' is not a chain value (64 hex digits)")
    if position == 1 and previous == GENESIS:
        return None
    return Anchor(row.pipe, position - 1, previous, "", row.ts)


class ExportSide:
    """A jsonl export as one side of ``compare_sides``; ``open`` checks it first."""

    def __init__(self, path: Path, starts: dict[str, Anchor | None]) -> None:
        self.path = path
        self.starts = starts  # pipe -> where its export starts, in the order first seen

    @classmethod
    def open(cls, path: Path) -> ExportSide:
        """The export at ``path``, every line checked (NotAnExport naming the first bad
        one)."""
        starts: dict[str, Anchor | None] = {}
        for line, doc, row in _records(path):
            if row.pipe not in starts:
                starts[row.pipe] = _start(doc, row, f"{path.name} line {line}")
        if not starts:
            raise NotAnExport(f"{path.name} holds no records: not a jsonl export of a record")
        return cls(path, starts)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def start(self) -> str:
        return f"{self.path.name} starts"

    @property
    def pipes(self) -> list[str]:
        return list(self.starts)

    async def anchor(self, pipe: str) -> Anchor | None:
        return self.starts.get(pipe)

    async def rows(self, pipe: str) -> AsyncIterator[RecordRow]:
        for _line, _doc, row in _records(self.path):
            if row.pipe == pipe:
                yield row

    async def has(self, pipe: str, message_id: str) -> bool:
        return any(row.pipe == pipe and row.id == message_id
                   for _line, _doc, row in _records(self.path))


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any], RecordRow]]:
    """(line number, the line's object, its record) of every line of the export."""
    try:
        with path.open("r", encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                if not text.strip():
                    continue  # a blank line (an editor's last newline)
                where = f"{path.name} line {number}"
                try:
                    doc = json.loads(text)
                except ValueError:
                    raise NotAnExport(f"{where}: not JSON: not a jsonl export of a record "
                                      "(`roomlink history export --format jsonl`)") from None
                yield number, doc, _row(doc, number, where)
    except UnicodeDecodeError:
        raise NotAnExport(f"{path.name}: not UTF-8 text: not a jsonl export") from None
    except OSError as e:
        raise NotAnExport(f"{path}: cannot read: {e.strerror}") from None
