"""The store contract: every test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from roomlink.message.model import Attachment, Author, Kind, Message, RoomRef
from roomlink.store import NewMessage, Store, StoreError, UnknownOutboxRow, open_store
from store.conftest import StoreFactory

IRC = RoomRef("acme-irc", "#project")
API = RoomRef("agency-api", "lobby")


def msg(n: int, pipe: str = "project", **kw: object) -> Message:
    fields: dict[str, object] = {
        "id": f"m{n:05d}",
        "pipe": pipe,
        "origin_connector": "agency-api",
        "origin_room": "lobby",
        "origin_native_id": f"n{n}",
        "author": Author(name="alice", id="U1", party="agency", platform="api"),
        "text": f"hello {n}",
        "ts": datetime(2026, 11, 23, 9, 0, n % 60, 123456, tzinfo=UTC),
    }
    fields.update(kw)
    return Message.model_validate(fields)


async def test_messages_round_trip_unchanged(store: Store) -> None:
    rich = msg(
        1,
        kind=Kind.ACTION,
        text="**bold** ünïcödé 🎉 `code`\nline two",
        attachments=(Attachment(url="https://x.test/a.png", name="a.png", mime="image/png"),),
        reply_to="m00000",
        ts=datetime(2026, 11, 23, 10, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    await store.append([NewMessage(msg(0)), NewMessage(rich)])
    listed = [m for _, m in await store.messages()]
    assert listed == [msg(0), rich]
    assert listed[1].ts == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


async def test_get_message_by_id(store: Store) -> None:
    await store.append([NewMessage(msg(1)), NewMessage(msg(2, text="two"))])
    assert await store.get_message("m00002") == msg(2, text="two")
    assert await store.get_message("nope") is None


async def test_order_paging_and_pipe_filter(store: Store) -> None:
    await store.append([NewMessage(msg(i, pipe="a" if i % 2 else "b")) for i in range(10)])
    seqs = [seq for seq, _ in await store.messages()]
    assert seqs == sorted(seqs) and len(seqs) == 10
    first = await store.messages(limit=4)
    rest = await store.messages(after_seq=first[-1][0])
    assert [m.id for _, m in first + rest] == [f"m{i:05d}" for i in range(10)]
    assert [m.id for _, m in await store.messages(pipe="a")] == [
        f"m{i:05d}" for i in range(1, 10, 2)
    ]


async def test_a_message_is_stored_once(store: Store) -> None:
    first = await store.append([NewMessage(msg(1), (IRC,))])
    again = await store.append([NewMessage(msg(1), (IRC,)), NewMessage(msg(1), (IRC,))])
    assert len(first[0]) == 1 and again == [[], []]
    assert len(await store.messages()) == 1
    assert len(await store.pending(IRC.connector, IRC.room)) == 1


async def test_outbox_is_per_room_in_order_and_pages(store: Store) -> None:
    await store.append([NewMessage(msg(i), (IRC, API) if i % 2 else (IRC,)) for i in range(6)])
    irc = await store.pending(IRC.connector, IRC.room)
    assert [r.message.id for r in irc] == [f"m{i:05d}" for i in range(6)]
    assert [r.id for r in irc] == sorted(r.id for r in irc)
    api = await store.pending(API.connector, API.room)
    assert [r.message.id for r in api] == ["m00001", "m00003", "m00005"]
    page = await store.pending(IRC.connector, IRC.room, after_id=irc[2].id, limit=2)
    assert [r.message.id for r in page] == ["m00003", "m00004"]


async def test_delivered_rows_leave_the_outbox_and_map_native_ids(store: Store) -> None:
    [[row]] = await store.append([NewMessage(msg(1), (IRC,))])
    await store.mark_delivered(row.id, ["irc-1", "irc-2"])
    assert await store.pending(IRC.connector, IRC.room) == []
    assert await store.native_id("m00001", IRC.connector, IRC.room) == "irc-1"
    # a reply to either part of the copy, or to the original, finds the message
    for native in ("irc-1", "irc-2"):
        assert await store.message_id_for_native(IRC.connector, IRC.room, native) == "m00001"
    assert await store.message_id_for_native("agency-api", "lobby", "n1") == "m00001"
    assert await store.native_id("m00001", "agency-api", "lobby") == "n1"
    assert await store.message_id_for_native(IRC.connector, IRC.room, "nope") is None
    counts = await store.counts()
    assert counts["delivered"] == 1 and counts["pending"] == 0 and counts["messages"] == 1


async def test_failed_and_retried_rows(store: Store) -> None:
    [[a], [b]] = await store.append([NewMessage(msg(1), (IRC,)), NewMessage(msg(2), (IRC,))])
    await store.note_attempt(a.id, "timeout", 3)
    [retried, _] = await store.pending(IRC.connector, IRC.room)
    assert retried.attempts == 3
    await store.mark_failed(a.id, "gave up", 8)
    assert [r.id for r in await store.pending(IRC.connector, IRC.room)] == [b.id]
    assert (await store.counts())["failed"] == 1
    with pytest.raises(UnknownOutboxRow):
        await store.mark_delivered(999_999, ["x"])


async def test_cursors(store: Store) -> None:
    assert await store.get_cursor("acme-tg", "offset") is None
    await store.set_cursor("acme-tg", "offset", "41")
    await store.set_cursor("acme-tg", "offset", "42")
    await store.set_cursor("other", "offset", "7")
    assert await store.get_cursor("acme-tg", "offset") == "42"
    assert await store.get_cursor("other", "offset") == "7"


async def test_everything_survives_reopen(open_: StoreFactory) -> None:
    first = await open_()
    [[row], _] = await first.append([NewMessage(msg(1), (IRC,)), NewMessage(msg(2))])
    await first.set_cursor("c", "k", "v")
    await first.close()
    second = await open_()  # migrations run again: a no-op
    assert [m.id for _, m in await second.messages()] == ["m00001", "m00002"]
    assert [r.id for r in await second.pending(IRC.connector, IRC.room)] == [row.id]
    assert await second.get_cursor("c", "k") == "v"


async def test_concurrent_writers_are_group_committed_without_loss(store: Store) -> None:
    async def writer(start: int) -> None:
        for i in range(start, start + 50):
            await store.append([NewMessage(msg(i), (IRC,))])

    await asyncio.gather(*(writer(k * 50) for k in range(8)))
    assert len(await store.messages()) == 400
    rows = await store.pending(IRC.connector, IRC.room, limit=1000)
    assert len(rows) == 400 and len({r.message.id for r in rows}) == 400


async def test_a_failing_write_does_not_take_its_batch_down(store: Store) -> None:
    [[row]] = await store.append([NewMessage(msg(1), (IRC,))])
    bad = store.mark_delivered(123_456, ["x"])
    good = store.append([NewMessage(msg(2), (IRC,))])
    done = store.mark_delivered(row.id, ["ok"])
    results = await asyncio.gather(bad, good, done, return_exceptions=True)
    assert isinstance(results[0], UnknownOutboxRow)
    assert len(await store.messages()) == 2
    assert await store.native_id("m00001", IRC.connector, IRC.room) == "ok"


async def test_marks_from_many_rooms_at_once_all_land(store: Store) -> None:
    """Rooms mark their copies at the same time (PostgreSQL commits the first at once and
    the rest together, split posts included); an unknown row fails alone."""
    appended = await store.append([NewMessage(msg(i), (IRC, API)) for i in range(30)])
    rows = [row for rows in appended for row in rows]
    marks = [store.mark_delivered(r.id, [f"n{r.id}", f"n{r.id}b"] if r.id % 3 == 0
                                  else [f"n{r.id}"]) for r in rows]
    results = await asyncio.gather(marks[0], store.mark_delivered(987_654, ["x"]), *marks[1:],
                                   return_exceptions=True)
    assert isinstance(results.pop(1), UnknownOutboxRow) and results == [None] * len(rows)
    assert await store.pending(IRC.connector, IRC.room) == []
    assert await store.pending(API.connector, API.room) == []
    for r in rows:
        assert await store.native_id(r.message.id, r.connector, r.room) == f"n{r.id}"
        if r.id % 3 == 0:
            found = await store.message_id_for_native(r.connector, r.room, f"n{r.id}b")
            assert found == r.message.id


async def test_closed_store_refuses_work(open_: StoreFactory) -> None:
    store = await open_()
    await store.close()
    with pytest.raises(StoreError):
        await store.append([NewMessage(msg(1))])
    with pytest.raises(StoreError):
        await store.messages()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2secret@127.0.0.1/x",
        "postgresql://postgres:hunter2secret@127.0.0.1:1/none",
        "postgresql://nobody:hunter2secret@127.0.0.1:5432/no_such_db",
    ],
)
async def test_unusable_urls_fail_clearly_without_the_password(url: str) -> None:
    with pytest.raises(StoreError) as err:
        await open_store("agency", url)
    assert "hunter2secret" not in str(err.value)
    assert "***" in str(err.value)


async def test_sqlite_directory_is_created(tmp_path: object) -> None:
    store = await open_store("agency", f"sqlite:///{tmp_path}/deep/er/agency.db")
    try:
        await store.append([NewMessage(msg(1))])
        assert len(await store.messages()) == 1
    finally:
        await store.close()
