"""Outages lose nothing: kill -9 of either instance during a stream of messages, the host
down and the link cut (a relay between them cut and plugged again) while both sides keep
talking; what was said crosses when the link is back,
in order, once, and the records are equal again. The host keeps its store in PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
from fedkit import Cable, Instance, digest, star

from rlkit import Daemon, Room, Stream, export, running
from store.conftest import pg_database

N = 40  # messages each side says


async def _until(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _ids(stream: Stream) -> list[str]:
    return [f["id"] for f in stream.frames]


async def test_kill_9_of_either_side_and_the_link_down_lose_nothing(tmp_path: Path) -> None:
    async with pg_database() as url:
        host = Instance("agency", tmp_path / "agency", store=url)
        guest = Instance("acme", tmp_path / "acme")
        star(host, [guest])
        hd, gd = Daemon(host.path, host.ports), Daemon(guest.path, guest.ports)
        await hd.start()
        await gd.start()
        try:
            async with aiohttp.ClientSession() as http:
                h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
                async with h.stream() as hs, g.stream() as gs:
                    sent: dict[str, list[str]] = {"agency": [], "acme": []}

                    async def talk(room: Room, party: str) -> None:
                        for i in range(N):
                            sent[party].append(await room.post_until_accepted(
                                f"{party} {i}", f"{party}-person", f"{party}-{i}"))

                    async def chaos() -> None:
                        await _until(lambda: len(sent["acme"]) >= 8, "acme talks")
                        gd.kill()  # the guest, mid-stream
                        await gd.start()
                        await _until(lambda: len(sent["agency"]) >= 20, "agency talks")
                        hd.kill()  # the host: the link is down, the guest keeps taking
                        await _until(lambda: len(sent["acme"]) >= 30, "acme talks alone")
                        await hd.start()

                    await asyncio.gather(talk(h, "agency"), talk(g, "acme"), chaos())
                    await _until(lambda: set(sent["acme"]) <= set(_ids(hs)),
                                 f"the host's room got {len(hs.frames)} of {N}")
                    await _until(lambda: set(sent["agency"]) <= set(_ids(gs)),
                                 f"the guest's room got {len(gs.frames)} of {N}")
                # each room got the other side's messages in the order they were said, and
                # a kill repeats at most the one copy in flight to it
                for stream, other in ((hs, "acme"), (gs, "agency")):
                    firsts = list(dict.fromkeys(_ids(stream)))
                    assert firsts == sent[other]
                    doubled = [i for i, n in Counter(_ids(stream)).items() if n > 1]
                    assert len(doubled) <= 2, doubled
                # what the host placed of the guest's own messages comes back to it
                await _until(lambda: len(export(guest.path, "acme")) == 2 * N,
                             "the guest's record is complete")
            assert hd.terminate() == 0 and gd.terminate() == 0
        finally:
            hd.cleanup()
            gd.cleanup()
        host_record, guest_record = export(host.path, "agency"), export(guest.path, "acme")
        assert len(host_record) == 2 * N
        assert host_record == guest_record
        assert [r["id"] for r in host_record if r["author"]["party"] == "acme"] == sent["acme"]
        assert digest(host) == digest(guest)


async def test_the_link_cut_and_restored_both_sides_talking(tmp_path: Path) -> None:
    host = Instance("agency", tmp_path / "agency")
    guest = Instance("acme", tmp_path / "acme")
    star(host, [guest])
    cable = Cable.between(guest, host)
    await cable.plug()
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
        async with h.stream() as hs, g.stream() as gs:
            before = [(await g.post("before the cut", "bob"))["id"]]
            await hs.wait_for(1)
            await cable.cut()
            await _until(lambda: "link with 127.0.0.1 down" in hd.log(), "the host sees it")
            during_host = [(await h.post(f"agency alone {i}", "alice"))["id"] for i in range(5)]
            during_guest = [(await g.post(f"acme alone {i}", "bob"))["id"] for i in range(5)]
            # each side serves its own rooms meanwhile; nothing has crossed
            assert _ids(hs) == before and _ids(gs) == []
            await cable.plug()
            await _until(lambda: _ids(hs) == before + during_guest, "the guest's messages")
            await _until(lambda: _ids(gs) == during_host, "the host's messages")
            await _until(lambda: len(export(guest.path, "acme")) == 11, "the guest's record")
        assert hd.terminate() == 0 and gd.terminate() == 0
    assert export(host.path, "agency") == export(guest.path, "acme")
    assert digest(host) == digest(guest)
