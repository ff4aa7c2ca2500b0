"""Walking a store's record in order: recompute every pipe's chain and find the first break.

One ``Walker`` takes rows in seq order (any number of pipes, one page at a time) and keeps
per pipe two things: the chain recomputed from the content alone (what ``digest`` prints,
so that two parties' lines differ exactly when their records do) and the check of each
row's stored chain and position against it (what ``verify`` reports). ``check_files``
reads back every kept file a message refers to and hashes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from roomlink.store import Anchor, RecordRow, Store
from roomlink.store.chain import GENESIS, canonical_stored, link

PAGE = 1000  # rows per read: bounded memory however long the record

# kinds of break
ALTERED, REMOVED, INSERTED, REORDERED = "altered", "removed", "inserted", "reordered"


@dataclass(slots=True)
class Break:
    pipe: str
    position: int  # 1-based position in the pipe (retention's anchor count included)
    message_id: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return (
            f"{self.pipe}: BROKEN at position {self.position}, message {self.message_id}: "
            f"{self.kind}: {self.detail}"
        )


@dataclass(slots=True)
class PipeWalk:
    pipe: str
    anchor: Anchor | None
    count: int = 0  # recomputed from content: records so far (anchor included)
    head: str = GENESIS
    last_id: str | None = None
    verified: int = 0  # position of the last row whose stored chain checked out
    verified_head: str = GENESIS
    broken: Break | None = None
    rows: int = 0

    def __post_init__(self) -> None:
        if self.anchor is not None:
            self.count = self.verified = self.anchor.count
            self.head = self.verified_head = self.anchor.head
            self.last_id = self.anchor.message_id

    def feed(self, r: RecordRow) -> None:
        data = canonical_stored(r)
        self.rows += 1
        self.count += 1
        self.head = link(self.head, data)
        self.last_id = r.id
        if self.broken is not None:
            b = self.broken
            if b.kind == REMOVED and r.chain_n == b.position:
                b.kind = REORDERED
                b.detail = (
                    f"message {r.id} (position {b.position}) was moved after it; "
                    "rows were swapped"
                )
            return
        self._check(r, data)

    def _check(self, r: RecordRow, data: bytes) -> None:
        expected = self.verified + 1
        chain, n = r.chain, r.chain_n
        if chain is None or n is None:
            self._break(r, expected, INSERTED, "a row without a chain: added outside roomlink")
        elif n == expected:
            h = link(self.verified_head, data)
            if h != chain:
                self._break(r, expected, ALTERED, "its content does not match its chain value")
            else:
                self.verified, self.verified_head = n, h
        elif n > expected:
            missing = f"position {expected}" if n == expected + 1 else (
                f"positions {expected}-{n - 1}")
            self._break(r, expected, REMOVED,
                        f"it claims position {n}: {missing} missing (removed) before it")
        else:
            self._break(r, expected, INSERTED,
                        f"it repeats position {n}: a row inserted or copied in")

    def _break(self, r: RecordRow, position: int, kind: str, detail: str) -> None:
        self.broken = Break(self.pipe, position, r.id, kind, detail)

    def digest_fields(self) -> tuple[str, int, str | None, str]:
        return self.pipe, self.count, self.last_id, self.head


class Walker:
    def __init__(self, anchors: dict[str, Anchor]) -> None:
        self.anchors = anchors
        self.pipes: dict[str, PipeWalk] = {}

    def pipe(self, name: str) -> PipeWalk:
        walk = self.pipes.get(name)
        if walk is None:
            walk = self.pipes[name] = PipeWalk(name, self.anchors.get(name))
        return walk

    def feed(self, r: RecordRow) -> PipeWalk:
        walk = self.pipe(r.pipe)
        walk.feed(r)
        return walk


async def rows_in_order(store: Store, pipe: str | None = None) -> AsyncIterator[RecordRow]:
    """Every row (of one pipe) in seq order, a page at a time: bounded memory."""
    after = 0
    while True:
        page = await store.record_page(pipe, after, PAGE)
        for row in page:
            yield row
        if len(page) < PAGE:
            return
        after = page[-1].seq


async def walk_store(store: Store, pipe: str | None = None) -> Walker:
    """Every record (of one pipe) of ``store`` walked: ``.pipes`` says what it found."""
    walker = Walker(await store.anchors())
    async for row in rows_in_order(store, pipe):
        walker.feed(row)
    return walker


# -- the files' bytes ------------------------------------------------------------------


@dataclass(slots=True)
class FileProblem:
    pipe: str
    message_id: str
    name: str
    sha256: str
    kind: str  # "missing" | "altered"

    def __str__(self) -> str:
        what = ("is missing from the store" if self.kind == "missing"
                else "does not match its sha256 (altered)")
        return f"{self.pipe}: message {self.message_id}: file {self.name!r} {what} ({self.sha256})"


async def _file_state(store: Store, sha256: str) -> str | None:
    """None when the kept bytes hash to ``sha256``, else "missing" or "altered"."""
    hasher = hashlib.sha256()
    try:
        async for chunk in store.files.read(sha256):
            hasher.update(chunk)
    except LookupError:
        return "missing"
    return None if hasher.hexdigest() == sha256 else "altered"


async def check_files(store: Store, pipe: str | None = None) -> tuple[int, list[FileProblem]]:
    """Every file a kept message (of one pipe) refers to, read back and hashed (each once):
    how many files were checked, and each message whose file is missing or altered."""
    states: dict[str, str | None] = {}
    problems: list[FileProblem] = []
    async for row in rows_in_order(store, pipe):
        if not row.attachments or row.attachments == "[]":
            continue
        try:
            attachments = json.loads(row.attachments)
        except ValueError:
            continue  # the chain check reports the altered row
        for a in attachments if isinstance(attachments, list) else ():
            sha256 = a.get("sha256") if isinstance(a, dict) else None
            if not isinstance(sha256, str):
                continue
            if sha256 not in states:
                states[sha256] = await _file_state(store, sha256)
            state = states[sha256]
            if state is not None:
                problems.append(FileProblem(row.pipe, row.id, str(a.get("name")), sha256, state))
    return len(states), problems
