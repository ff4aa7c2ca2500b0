"""Two and three real roomlink instances, each with its own store and API room, one
conversation across them: the host's order on every side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from fedkit import Instance, digest, star

from rlkit import Room, export, running


async def test_both_ways_one_order_equal_digests(tmp_path: Path) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
        async with h.stream() as hs, g.stream() as gs:
            first = await h.post("hello from the agency", "alice")
            answer = await g.post("hello back from **acme**", "bob", reply_to=first["id"])
            await hs.wait_for(1)
            await gs.wait_for(1)
            assert hs.frames[0]["id"] == answer["id"]
            assert hs.frames[0]["author"] == {"name": "bob", "party": "acme", "platform": "api"}
            assert hs.frames[0]["reply_to"] == first["id"]
            assert gs.frames[0]["id"] == first["id"]
            assert gs.frames[0]["author"] == {"name": "alice", "party": "agency",
                                              "platform": "api"}
            await g.edit(answer["id"], "hello back from acme, edited", "bob")
            await h.delete(first["id"], "alice")
            await hs.wait_for(2)
            await gs.wait_for(2)
            assert hs.frames[1]["kind"] == "edit" and hs.frames[1]["target"] == answer["id"]
            assert gs.frames[1]["kind"] == "delete" and gs.frames[1]["target"] == first["id"]
            # a stream of messages from both sides at once
            for i in range(20):
                await asyncio.gather(h.post(f"agency {i}", "alice"), g.post(f"acme {i}", "bob"))
            await hs.wait_for(22)
            await gs.wait_for(22)
        assert hd.terminate() == 0 and gd.terminate() == 0
    host_record, guest_record = export(host.path, "agency"), export(guest.path, "acme")
    assert len(host_record) == 44
    assert host_record == guest_record
    assert digest(host) == digest(guest)
