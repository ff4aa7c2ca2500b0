"""What replicas' appends rely on (``relay.align``, ``relay.conditional``), on both
engines: ``pipe_heads`` reads where a pipe stands, ``start_append_at`` stores only while
the pipe stands there (``HeadMoved`` otherwise, nothing stored)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roomlink.message.model import Author, Message, RoomRef
from roomlink.store import NewMessage, Store, open_store
from roomlink.store.chain import GENESIS
from roomlink.store.errors import HeadMoved

ROOM = RoomRef("acme-api", "lobby")


def said(name: str, pipe: str = "project") -> NewMessage:
    return NewMessage(Message(id=name, pipe=pipe, origin_connector=ROOM.connector,
                              origin_room=ROOM.room, text=name,
                              author=Author(name="Alice", party="acme", platform="api")),
                      (ROOM,))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store("acme", store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_append_at_a_head_that_moved_stores_nothing(store: Store) -> None:
    assert await store.pipe_heads(["project"]) == {"project": (0, GENESIS, "")}
    start = (await store.pipe_heads(["project"]))["project"]
    assert [len(r) for r in await store.start_append_at([said("m1")], {"project": start[:2]})
            ] == [1]
    after = (await store.pipe_heads(["project", "other"]))
    assert after["project"].n == 1 and after["project"].newest == "m1"
    assert after["other"] == (0, GENESIS, "")
    with pytest.raises(HeadMoved):  # a writer that read the pipe before m1
        await store.start_append_at([said("m2")], {"project": start[:2]})
    assert await store.get_message("m2") is None
    # the head read now: stored, chained on m1; another pipe's head is checked too
    await store.start_append_at([said("m2")], {"project": after["project"][:2],
                                               "other": after["other"][:2]})
    assert [m.id for _, m in await store.messages("project")] == ["m1", "m2"]
    # a message stored already is kept once, as by append
    now = (await store.pipe_heads(["project"]))["project"]
    assert await store.start_append_at([said("m2")], {"project": now[:2]}) == [[]]
    assert (await store.pipe_heads(["project"]))["project"] == now
