"""Files in the party's record: the chain covers each attachment's digest, ``verify``
reads every file back and names a missing or altered one with its message, retention
removes the files no kept message refers to. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from roomlink.message.model import Attachment
from roomlink.record import retention
from roomlink.record.verify import check_files, walk_store
from roomlink.relay.files import StoreFiles
from roomlink.store import NewMessage, Store, chain
from roomlink.store.files.folder import FolderFiles
from store.test_files import ROOM, topology
from store.test_store import msg


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def keep(store: Store, data: bytes, name: str = "a.png") -> Attachment:
    files = StoreFiles("agency-api", "agency", {"agency": store}, topology)
    return await files.keep(ROOM, name, "image/png", one(data))


def test_an_attachment_without_bytes_encodes_as_before() -> None:
    old = Attachment(url="https://x.test/a.png", name="a.png")
    before = b'"attachments":[{"mime":null,"name":"a.png","size":null,"url":"https://x.test/a.png"}]'
    assert before in chain.canonical(msg(1, attachments=(old,)))
    kept = Attachment(name="a.png", mime="image/png", size=3, sha256="ab" * 32)
    encoded = chain.canonical(msg(1, attachments=(kept,)))
    assert b'{"mime":"image/png","name":"a.png","sha256":"' + b"ab" * 32 + b'","size":3,' \
        b'"url":null}' in encoded
    # the hand-built encoding is the reference one, digest included
    doc = chain.reference_bytes(**{
        "id": "m00001", "pipe": "project", "kind": "message", "origin_connector": "agency-api",
        "origin_room": "lobby", "author_name": "alice", "author_id": "U1",
        "author_party": "agency", "author_platform": "api", "text": "hello 1",
        "attachments": [kept.model_dump()], "reply_to": None, "target": None,
        "ts": msg(1).ts})  # fmt: skip
    assert doc == encoded


async def test_a_record_with_files_verifies_and_names_missing_and_altered_files(
    store: Store, store_url: str
) -> None:
    a = await keep(store, os.urandom(100_000), "mock-up.png")
    b = await keep(store, os.urandom(70_000), "contract.pdf")
    c = await keep(store, b"fine", "ok.txt")
    old = Attachment(url="https://x.test/old.png", name="old.png")  # a row from before
    await store.append([NewMessage(msg(0, attachments=(old,))),
                        NewMessage(msg(1, attachments=(a, c))),
                        NewMessage(msg(2, attachments=(b,))),
                        NewMessage(msg(3, attachments=(a,)))])
    walk = await walk_store(store)
    assert walk.pipes["project"].broken is None
    assert await check_files(store) == (3, [])
    assert a.sha256 and b.sha256
    if isinstance(store.files, FolderFiles):
        store.files.path_of(a.sha256).unlink()
        store.files.path_of(b.sha256).write_bytes(b"not the contract")
    else:
        pg = await asyncpg.connect(store_url)
        try:
            await pg.execute("DELETE FROM files WHERE sha256 = $1", a.sha256)
            await pg.execute("UPDATE file_chunks SET data = 'x' WHERE sha256 = $1", b.sha256)
        finally:
            await pg.close()
    checked, problems = await check_files(store)
    assert checked == 3
    found = sorted((p.message_id, p.name, p.kind) for p in problems)
    assert found == [("m00001", "mock-up.png", "missing"), ("m00002", "contract.pdf", "altered"),
                     ("m00003", "mock-up.png", "missing")]
    assert "message m00002: file 'contract.pdf' does not match its sha256" in str(
        next(p for p in problems if p.kind == "altered"))


async def test_retention_removes_the_files_no_kept_message_refers_to(store: Store) -> None:
    old = await keep(store, b"old file", "old.txt")
    shared = await keep(store, b"shared file", "shared.txt")
    orphan = await keep(store, b"kept, then kill -9 before its message", "orphan.txt")
    await store.append([NewMessage(msg(0, attachments=(old, shared)))])
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await store.append([NewMessage(msg(1, attachments=(shared,)))])
    fid = await store.file_id(old.sha256 or "")
    # young files stay, even unreferenced: their message may be on its way in
    assert await retention.remove_unreferenced(store) == 0
    later = datetime.now(UTC) + timedelta(hours=2)
    # the orphan goes; what a kept message refers to stays
    assert await retention.remove_unreferenced(store, later) == 1
    kept = {sha for sha, _ in await store.files.kept()}
    assert kept == {old.sha256, shared.sha256}
    # the record's first message is cut: its own file goes, the shared one stays
    removed = await retention.apply(store, days=1, now=between + timedelta(days=1))
    assert removed == {"project": 1}
    assert {sha for sha, _ in await store.files.kept()} == {shared.sha256}
    assert await store.file_by_id(fid) is None
    assert orphan.sha256 not in kept
    assert json.loads((await store.record_page())[0].attachments)[0]["name"] == "shared.txt"


async def test_a_file_of_a_message_held_for_a_host_stays_while_it_is_held(
    store: Store,
) -> None:
    held = await keep(store, b"said here, waiting for the host", "held.txt")
    await store.hold("to-agency", "project", [msg(0, attachments=(held,))])
    later = datetime.now(UTC) + timedelta(hours=2)  # the host away for hours
    assert await retention.remove_unreferenced(store, later) == 0
    assert await store.files.has(held.sha256 or "")
    await store.release([msg(0).id])  # the host refused it: nothing refers to it now
    assert await retention.remove_unreferenced(store, later) == 1


async def test_the_daemons_pass_removes_orphan_files_of_a_party_without_retention(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from roomlink.daemon.retention import RetentionJob

    kept = await keep(store, b"its message is stored", "kept.txt")
    await keep(store, b"kill -9 before its message", "orphan.txt")
    await store.append([NewMessage(msg(0, attachments=(kept,)))])
    monkeypatch.setattr(retention, "FILE_GRACE", timedelta(0))
    job = RetentionJob({"agency": store}, {"agency": None})
    job.start()
    try:
        for _ in range(200):
            if len(await store.files.kept()) == 1:
                break
            await asyncio.sleep(0.05)
    finally:
        await job.stop()
    assert [sha for sha, _ in await store.files.kept()] == [kept.sha256]
    assert await store.record_size() == 1  # no record is cut without retention_days


async def test_a_file_kept_again_while_retention_looks_is_not_removed(store: Store) -> None:
    """Retention lists the unreferenced files, then removes them: one kept again in
    between (a new message with the same bytes, on its way in) stays."""
    a = await keep(store, b"the same bytes twice", "a.txt")
    assert a.sha256
    listed_at = datetime.now(UTC)
    await asyncio.sleep(0.02)
    await keep(store, b"the same bytes twice", "again.txt")
    assert await store.files.remove([a.sha256], listed_at) == []
    assert await store.files.has(a.sha256)
    assert await store.files.remove([a.sha256], datetime.now(UTC)) == [a.sha256]
    assert not await store.files.has(a.sha256)
