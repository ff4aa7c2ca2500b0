"""Messages held for the instance hosting their conversation (federation), both engines."""

from __future__ import annotations

from roomlink.store import Store
from store.test_store import msg


async def test_hold_in_order_once_release_and_reopen(store: Store, open_: object) -> None:
    await store.hold("to-agency", "project", [msg(1), msg(2)])
    await store.hold("to-agency", "project", [msg(1), msg(3)])  # said again after a crash
    rows = await store.held("to-agency")
    assert [(room, m.id) for _, room, m in rows] == [
        ("project", "m00001"), ("project", "m00002"), ("project", "m00003")]
    assert rows[0][2] == msg(1)  # every field comes back
    assert await store.held_counts() == {"to-agency": 3}
    assert await store.held("other") == []
    assert [m.id for _, _, m in await store.held("to-agency", after=rows[0][0])] == [
        "m00002", "m00003"]
    assert await store.held_message("m00002") == msg(2)
    await store.release(["m00001", "m00003"])
    assert await store.held_message("m00001") is None
    await store.hold("to-agency", "project", [msg(4)])
    later = await store.held("to-agency")
    assert [m.id for _, _, m in later] == ["m00002", "m00004"]
    # an id is never given again after a release: the link resumes after the last it sent
    assert later[1][0] > rows[2][0]
    assert await store.get_message("m00002") is None  # held is not the record
