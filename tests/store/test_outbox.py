"""The store's operator side (``outbox list|retry``, the status page) on both engines."""

from __future__ import annotations

from roomlink.message.model import RoomRef
from roomlink.store import NewMessage, RoomCount, Store
from store.test_store import API, IRC, msg

OTHER = RoomRef("acme-side", "#other")


async def test_list_filter_retry_and_count_copies(store: Store) -> None:
    rows = await store.append(
        [NewMessage(msg(i), (IRC, API) if i % 2 else (IRC,)) for i in range(6)]
        + [NewMessage(msg(9, pipe="side"), (OTHER,))]
    )
    irc = [r[0] for r in rows[:6]]
    for row in irc[1:4]:  # m1, m2, m3 fail for good in #project
        await store.mark_failed(row.id, f"refused {row.message.id}", 8)
    await store.mark_delivered(irc[0].id, ["n0"])

    failed = await store.outbox_entries(state="failed")
    assert [(e.message_id, e.connector, e.room, e.state, e.attempts) for e in failed] == [
        (f"m0000{i}", IRC.connector, IRC.room, "failed", 8) for i in (1, 2, 3)]
    assert failed[0].last_error == "refused m00001" and failed[0].done_at is not None
    newest = await store.outbox_entries(state="failed", limit=2, newest_first=True)
    assert [e.message_id for e in newest] == ["m00003", "m00002"]
    assert [e.message_id for e in await store.outbox_entries(room="lobby")] == [
        "m00001", "m00003", "m00005"]
    assert [e.message_id for e in await store.outbox_entries(message_id="m00009")] == ["m00009"]
    assert [e.state for e in await store.outbox_entries(connector=IRC.connector)] == [
        "delivered", "failed", "failed", "failed", "pending", "pending"]

    counts = sorted(await store.room_counts(), key=lambda c: (c.connector, c.room, c.state))
    assert counts == [
        RoomCount("project", IRC.connector, IRC.room, "failed", 3),
        RoomCount("project", IRC.connector, IRC.room, "pending", 2),
        RoomCount("side", OTHER.connector, OTHER.room, "pending", 1),
        RoomCount("project", API.connector, API.room, "pending", 3),
    ]
    heads = await store.pending_heads()
    assert heads[(IRC.connector, IRC.room)] == irc[4].id

    # one message first, then the rest; each keeps its place in the room's order
    assert await store.retry_failed(message_id="m00002") == 1
    assert await store.retry_failed(connector="nope") == 0
    assert await store.retry_failed(connector=IRC.connector, room=IRC.room) == 2
    assert await store.retry_failed() == 0  # nothing failed any more
    pending = await store.pending(IRC.connector, IRC.room)
    assert [r.message.id for r in pending] == [f"m0000{i}" for i in (1, 2, 3, 4, 5)]
    assert all(r.attempts == 0 for r in pending)
    assert (await store.pending_heads())[(IRC.connector, IRC.room)] == irc[1].id
    again = await store.outbox_entries(message_id="m00001", connector=IRC.connector)
    assert again[0].state == "pending" and again[0].last_error is None
    assert (await store.counts())["failed"] == 0
    assert await store.size_bytes() > 0
