"""A party's files: kept through ctx.files into every store of the room's pipes, on both
engines (a folder beside a SQLite database, chunks in a PostgreSQL one, or a folder the
party sets), content-addressed, streamed, refused whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roomlink.connector.files import FileRefused
from roomlink.message.model import Attachment, RoomRef
from roomlink.relay.files import StoreFiles
from roomlink.relay.topology import Pipe, PipeRoom, Topology
from roomlink.store import Store, open_store
from roomlink.store.files import MissingFile

from .conftest import pg_database

ROOM = "#room"


def topology() -> Topology:
    rooms = (
        PipeRoom(RoomRef("agency-api", ROOM), "agency", "inout"),
        PipeRoom(RoomRef("acme-irc", "#acme"), "acme", "inout"),
    )
    return Topology({"p": Pipe("p", rooms)})


async def chunks_of(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(files: StoreFiles, a: Attachment) -> bytes:
    return b"".join([c async for c in files.open(a)])


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[dict[str, Store]]:
    """agency on SQLite, acme on PostgreSQL: a file goes into both."""
    async with pg_database() as url:
        stores = {
            "agency": await open_store("agency", f"sqlite:///{tmp_path}/agency.db"),
            "acme": await open_store("acme", url),
        }
        yield stores
        for s in stores.values():
            await s.close()


def files_of(stores: dict[str, Store], connector: str = "agency-api",
             party: str = "agency") -> StoreFiles:
    topo = topology()
    return StoreFiles(connector, party, stores, lambda: topo)


async def test_a_file_is_kept_once_in_every_store_of_the_pipe(
    two_stores: dict[str, Store], tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    files = files_of(two_stores)
    a = await files.keep(ROOM, "../etc/passwd", "image/png", chunks_of(data))
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert (a.name, a.mime, a.size) == (".._etc_passwd", "image/png", len(data))
    # the SQLite party's folder beside its database holds it under its digest
    assert (tmp_path / "agency.db.files" / a.sha256[:2] / a.sha256).read_bytes() == data
    assert await read_all(files, a) == data
    acme = files_of(two_stores, "acme-irc", "acme")
    assert await read_all(acme, a) == data
    # the same bytes again: kept once
    again = await files.keep(ROOM, "copy.png", None, chunks_of(data, 7777))
    assert again.sha256 == a.sha256 and again.mime == "application/octet-stream"
    assert len(await two_stores["acme"].files.kept()) == 1
    assert len(await two_stores["agency"].files.kept()) == 1


async def test_file_ids_are_per_party_unguessable_and_stable(
    two_stores: dict[str, Store]
) -> None:
    files = files_of(two_stores)
    a = await files.keep(ROOM, "a.txt", "text/plain", chunks_of(b"hello"))
    fid = await files.file_id(a)
    assert fid == await files.file_id(a)
    assert len(fid) >= 22 and a.sha256 and a.sha256 not in fid
    acme_id = await files_of(two_stores, "acme-irc", "acme").file_id(a)
    assert acme_id != fid
    assert await two_stores["agency"].file_by_id(fid) == a.sha256
    assert await two_stores["acme"].file_by_id(acme_id) == a.sha256
    assert await two_stores["acme"].file_by_id(fid) is None


async def broken(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("peer went away")


@pytest.mark.parametrize("case", ["too big", "declared lies short", "declared lies long",
                                  "broken stream"])
async def test_refused_files_leave_nothing(
    two_stores: dict[str, Store], tmp_path: Path, case: str
) -> None:
    files = files_of(two_stores)
    data = os.urandom(200_000)
    with pytest.raises(FileRefused):
        if case == "too big":
            await files.keep(ROOM, "x", None, chunks_of(data), max_bytes=100_000)
        elif case == "declared lies short":
            await files.keep(ROOM, "x", None, chunks_of(data), declared_size=100_000)
        elif case == "declared lies long":
            await files.keep(ROOM, "x", None, chunks_of(data), declared_size=300_000)
        else:
            await files.keep(ROOM, "x", None, broken(data))
    for store in two_stores.values():
        assert await store.files.kept() == []
    assert list((tmp_path / "agency.db.files" / ".tmp").iterdir()) == []
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(MissingFile):
        await read_all(files, Attachment(name="x", sha256=digest))


async def test_a_party_may_keep_its_files_in_a_folder(store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    store = await open_store("agency", store_url, files=str(folder))
    try:
        files = StoreFiles("agency-api", "agency", {"agency": store}, topology)
        a = await files.keep(ROOM, "отчёт.pdf", "application/pdf", chunks_of(b"%PDF-1.7"))
        assert a.sha256
        assert (folder / a.sha256[:2] / a.sha256).read_bytes() == b"%PDF-1.7"
    finally:
        await store.close()


async def test_each_engine_keeps_and_reads_back(store: Store) -> None:
    files = StoreFiles("agency-api", "agency", {"agency": store}, topology)
    data = os.urandom(1_000_003)
    a = await files.keep(ROOM, "big.bin", None, chunks_of(data, 4096))
    got = [c async for c in files.open(a)]
    assert b"".join(got) == data
    assert max(len(c) for c in got) <= 64 * 1024  # streamed back in chunks
    assert await store.files.has(a.sha256 or "")


async def test_a_25_mib_file_is_streamed_not_held_in_memory(store: Store) -> None:
    """Written through keep in 64 KiB chunks and read back: Python's peak allocation
    stays far below the file's size, on both engines."""
    import tracemalloc

    total, piece = 25 * 1024 * 1024, 64 * 1024
    seed = os.urandom(piece)
    expected = hashlib.sha256()
    for i in range(total // piece):
        expected.update(seed[i % 7 :] + seed[: i % 7])

    async def source() -> AsyncIterator[bytes]:
        for i in range(total // piece):
            yield seed[i % 7 :] + seed[: i % 7]  # made as it goes: never all at once

    files = StoreFiles("agency-api", "agency", {"agency": store}, topology)
    tracemalloc.start()
    try:
        a = await files.keep(ROOM, "big.bin", None, source())
        written_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        back, size = hashlib.sha256(), 0
        async for chunk in files.open(a):
            back.update(chunk)
            size += len(chunk)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (a.size, a.sha256) == (total, expected.hexdigest())
    assert (size, back.hexdigest()) == (total, a.sha256)
    assert written_peak < 4 * 1024 * 1024, written_peak
    assert read_peak < 4 * 1024 * 1024, read_peak


async def test_a_kept_file_and_its_folder_are_fsynced_before_keep_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store("agency", f"sqlite:///{tmp_path}/agency.db")
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    try:
        files = StoreFiles("agency-api", "agency", {"agency": store}, topology)
        a = await files.keep(ROOM, "a.txt", "text/plain", chunks_of(b"durable"))
    finally:
        await store.close()
    assert a.sha256
    folder = tmp_path / "agency.db.files" / a.sha256[:2]
    # the bytes (under their temporary name), then the folder that now names them
    assert any("/.tmp/" in p for p in synced)
    assert str(folder) in synced
    assert synced.index(str(folder)) > max(i for i, p in enumerate(synced) if "/.tmp/" in p)


async def test_opening_removes_what_a_crash_left_half_written_but_not_a_write_going_on(
    tmp_path: Path
) -> None:
    tmp = tmp_path / "agency.db.files" / ".tmp"
    tmp.mkdir(parents=True)
    (tmp / "crashed").write_bytes(b"half a file")
    os.utime(tmp / "crashed", (1, 1))  # last written long ago
    (tmp / "writing").write_bytes(b"a daemon is writing this now")
    store = await open_store("agency", f"sqlite:///{tmp_path}/agency.db")  # a CLI command
    await store.close()
    assert sorted(p.name for p in tmp.iterdir()) == ["writing"]
