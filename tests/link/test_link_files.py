"""The bytes of files cross a link: what one instance's room was given, every store of
the other instance keeps byte for byte, and its rooms post it as a file; a peer whose
bytes lie is refused, logged, and the message still crosses."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fedkit import Cable, Instance, agree, digest, star
from roomlink_connectors.link.files import chunk_frame
from roomlink_connectors.link.wire import nonce, private_key, prove, public_line

from filekit import PeerFile, pdf, png, post_files, received
from rlkit import Daemon, Room, Stream, export, run_cli, running
from roomlink.message.model import Author, Message, RoomRef, new_message_id, utcnow
from store.conftest import pg_database

# a picture of a few hundred KiB, and PDFs over 1 MiB: several chunks of a frame each
GUEST_FILES = (PeerFile("screenshot.png", "image/png", png(300, 300, seed=5)),
               PeerFile("contract.pdf", "application/pdf", pdf(1_500_000)))
HOST_FILES = (PeerFile("plan.png", "image/png", png(280, 260, seed=9)),
              PeerFile("offer.pdf", "application/pdf", pdf(2_300_000)))


def _verified(inst: Instance) -> str:
    done = run_cli("history", "verify", "-c", str(inst.path), "--party", inst.name)
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"files: (\d+) of (\d+) intact", done.stdout)
    assert found and found[1] == found[2] == "4", done.stdout
    return done.stdout


@pytest.mark.parametrize("host_store", ["sqlite", "postgresql"])
async def test_files_cross_both_ways_byte_for_byte(tmp_path: Path, host_store: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(pg_database()) if host_store != "sqlite" else None
        await _both_ways(tmp_path, url)


async def _both_ways(tmp_path: Path, host_url: str | None) -> None:
    host = Instance("agency", tmp_path / "agency", store=host_url)
    guest = Instance("acme", tmp_path / "acme")
    star(host, [guest])
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
        async with h.stream() as hs, g.stream() as gs:
            status, said = await post_files(http, g.base, "from acme", "bob", GUEST_FILES)
            assert status == 202, said
            frame = (await hs.wait_for(1))[0]
            assert frame["id"] == said["id"] and frame["text"] == "from acme"
            assert [a["sha256"] for a in frame["attachments"]] == [
                f.sha256 for f in GUEST_FILES]
            assert await received(http, h.base, frame) == list(GUEST_FILES)

            status, said = await post_files(http, h.base, "from the agency", "alice",
                                            HOST_FILES)
            assert status == 202, said
            frame = (await gs.wait_for(1))[0]
            assert frame["id"] == said["id"]
            assert await received(http, g.base, frame) == list(HOST_FILES)
            assert "refused the file" not in hd.log() + gd.log()
            # each file crossed once: the guest's own came back placed without its bytes
            for name in ("screenshot.png", "contract.pdf"):
                assert hd.log().count(f"received the file '{name}'") == 1
                assert f"received the file '{name}'" not in gd.log()
            for name in ("plan.png", "offer.pdf"):
                await gd.wait_log(f"received the file '{name}'")
                assert f"received the file '{name}'" not in hd.log()
        await agree(host, guest)
        assert hd.terminate() == 0 and gd.terminate() == 0
    host_record, guest_record = export(host.path, "agency"), export(guest.path, "acme")
    assert host_record == guest_record and len(host_record) == 2
    assert _verified(host) and _verified(guest)
    assert digest(host) == digest(guest)


async def test_a_star_the_host_passes_one_guests_files_to_the_other(tmp_path: Path) -> None:
    host = Instance("agency", tmp_path / "agency")
    guests = [Instance("acme", tmp_path / "acme"), Instance("contractor", tmp_path / "c")]
    star(host, guests)
    async with running(host.path, host.ports) as hd, \
            running(guests[0].path, guests[0].ports) as ad, \
            running(guests[1].path, guests[1].ports) as cd, aiohttp.ClientSession() as http:
        a, c = Room(http, guests[0].api_port, "lobby"), Room(http, guests[1].api_port, "lobby")
        async with c.stream() as cs:
            status, said = await post_files(http, a.base, "for everyone", "bob",
                                            GUEST_FILES[1:])
            assert status == 202, said
            frame = (await cs.wait_for(1))[0]
            assert frame["id"] == said["id"]
            assert await received(http, c.base, frame) == list(GUEST_FILES[1:])
        await agree(host, *guests)
        for daemon in (hd, ad, cd):
            assert daemon.terminate() == 0
    assert digest(host) == digest(guests[0]) == digest(guests[1])


# -- a lying peer ----------------------------------------------------------------------


def _message(text: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    m = Message(id=new_message_id("project", RoomRef("acme-api", "lobby"), text),
                pipe="project", origin_connector="acme-api", origin_room="lobby",
                author=Author(name="mallory", party="acme", platform="api"), text=text,
                ts=utcnow(), attachments=files)
    return m.model_dump(mode="json")


def _meta(f: PeerFile) -> dict[str, Any]:
    return {"name": f.name, "mime": f.type, "size": len(f.data), "sha256": f.sha256}


async def test_a_peer_whose_bytes_lie_is_refused_and_the_link_stays_up(
    tmp_path: Path,
) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    host.config["connectors"]["to-acme"]["max_file_bytes"] = 200_000
    host.config["parties"]["agency"]["files_url"] = "https://files.agency.example"
    host.write()
    honest = PeerFile("honest.pdf", "application/pdf", pdf(150_000))
    lying = PeerFile("lying.png", "image/png", png(100, 100, seed=3))
    huge = PeerFile("huge.bin", "application/octet-stream", bytes(300_000))
    sent = {honest.sha256: honest.data,
            lying.sha256: bytes(b ^ 1 for b in lying.data)}  # same size, other bytes
    wanted: list[str] = []
    async with running(host.path, host.ports) as hd, aiohttp.ClientSession() as http:
        room = Room(http, host.api_port, "lobby")
        async with room.stream() as stream, http.ws_connect(
                f"ws://127.0.0.1:{host.link_ports['acme']}") as ws:
            key, mine = private_key(guest.key), nonce()
            await ws.send_json({"t": "hello", "v": 1, "key": public_line(key), "nonce": mine})
            hello = await ws.receive_json(timeout=20)
            await ws.send_json({"t": "proof", "sig": prove(key, "guest", hello["nonce"], mine)})
            assert (await ws.receive_json(timeout=20))["t"] == "ready"
            answers: dict[int, str] = {}
            for n, (text, f) in enumerate([("lies", lying), ("too big", huge),
                                           ("honest", honest)], start=1):
                await ws.send_str(json.dumps({"t": "msg", "n": n, "room": "project",
                                              "m": _message(text, [_meta(f)])}))
            while len(answers) < 3:
                got = await ws.receive(timeout=30)
                assert got.type is aiohttp.WSMsgType.TEXT, got
                value = json.loads(got.data)
                if value["t"] == "want":
                    wanted.append(value["sha256"])
                    data, size = sent[value["sha256"]], value["max"]
                    assert size < 1_048_576
                    for i in range(0, len(data), size):
                        await ws.send_bytes(chunk_frame(value["f"], data[i:i + size]))
                    await ws.send_str(json.dumps({"t": "end", "f": value["f"]}))
                elif value["t"] in ("ok", "no"):
                    answers[value["n"]] = value["t"]
            assert answers == {1: "ok", 2: "ok", 3: "ok"}  # every message crossed
            assert wanted == [lying.sha256, honest.sha256]  # not the one over the limit
            frames = await stream.wait_for(3)
            # the host's files only go with a message it sent and that waits for its answer
            await ws.send_str(json.dumps({"t": "want", "f": 1, "n": 77, "max": 65536,
                                          "sha256": honest.sha256}))
            lack = await ws.receive_json(timeout=30)
            assert lack == {"t": "lack", "f": 1,
                            "reason": "not a file of a message waiting for its answer"}
        await hd.wait_log("refused the file 'lying.png'")
        assert "do not match the SHA-256 announced" in hd.log()
        await hd.wait_log("refused the file 'huge.bin'")
        assert "over the limit of 200000" in hd.log()
        assert "closing the link" not in hd.log()
        assert [f["text"].split("\n")[0] for f in frames] == ["lies", "too big", "honest"]
        assert "did not cross the link" in frames[0]["text"]
        assert "files.agency.example" not in frames[0]["text"]  # no link to no bytes
        assert "did not cross the link" in frames[1]["text"]
        assert await received(http, room.base, frames[2]) == [honest]
        assert hd.terminate() == 0
    on_disk = {p.name for p in (host.folder / "agency.db.files").rglob("*") if p.is_file()}
    assert honest.sha256 in on_disk  # what lied was never kept, not even by its own hash
    assert hashlib.sha256(bytes(b ^ 1 for b in lying.data)).hexdigest() not in on_disk


# -- kill -9 in the middle of a file ---------------------------------------------------


async def _until(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@dataclass
class SlowPair:
    """Host and guest running, the link through a :class:`Cable` carrying 1 MB a second,
    each one's API room watched."""

    host: Instance
    guest: Instance
    cable: Cable
    hd: Daemon
    gd: Daemon
    http: aiohttp.ClientSession
    h: Room
    g: Room
    hs: Stream
    gs: Stream

    async def kill_mid_file(self, file: PeerFile, sent_by: str, killed: str,
                            after: int) -> dict[str, Any]:
        """``file`` posted in ``sent_by``'s room (host: it goes down, guest: up); the
        ``killed`` instance's daemon killed -9 once ``after`` bytes of it have crossed the
        cable. What the post was answered."""
        down = sent_by == "host"
        way, room, author = ("down", self.h, "alice") if down else ("up", self.g, "bob")
        start = self.cable.carried[way]
        status, said = await post_files(self.http, room.base, way, author, [file])
        assert status == 202, said
        await _until(lambda: self.cable.carried[way] > start + after, f"bytes go {way}")
        (self.hd if killed == "host" else self.gd).kill()
        return said

    async def crosses_after_restart(self, file: PeerFile, said: dict[str, Any],
                                    killed: str, arrives_at: str) -> None:
        """The killed daemon started again; the file's message comes out whole in
        ``arrives_at``'s room, as the only new frame there."""
        await (self.hd if killed == "host" else self.gd).start()
        room, stream = (self.h, self.hs) if arrives_at == "host" else (self.g, self.gs)
        frames = await stream.wait_for(1, timeout=120)
        assert [f["id"] for f in frames] == [said["id"]]
        assert await received(self.http, room.base, frames[0]) == [file]


@contextlib.asynccontextmanager
async def _slowly_linked(tmp_path: Path) -> AsyncIterator[SlowPair]:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    cable = Cable.between(guest, host, rate=1_000_000)
    await cable.plug()
    hd, gd = Daemon(host.path, host.ports), Daemon(guest.path, guest.ports)
    await hd.start()
    await gd.start()
    try:
        async with aiohttp.ClientSession() as http:
            h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
            async with h.stream() as hs, g.stream() as gs:
                await gd.wait_log("to-agency: linked with")
                yield SlowPair(host, guest, cable, hd, gd, http, h, g, hs, gs)
            await agree(host, guest)
        assert hd.terminate() == 0 and gd.terminate() == 0
        assert "refused the file" not in hd.log() + gd.log()
        assert "Traceback" not in hd.log() + gd.log()
    finally:
        hd.cleanup()
        gd.cleanup()
        await cable.cut()
    for inst in (host, guest):
        done = run_cli("history", "verify", "-c", str(inst.path), "--party", inst.name)
        assert done.returncode == 0 and "files: 2 of 2 intact" in done.stdout, done.stdout
    assert export(host.path, "agency") == export(guest.path, "acme")


async def test_kill_9_of_the_host_mid_file_then_the_file_crosses_whole(tmp_path: Path) -> None:
    up = PeerFile("up.pdf", "application/pdf", pdf(4_000_000))
    down = PeerFile("down.png", "image/png", png(700, 700, seed=11))  # about 1.4 MiB
    async with _slowly_linked(tmp_path) as x:
        # the receiver (the host) killed while the guest's file comes up
        said_up = await x.kill_mid_file(up, sent_by="guest", killed="host", after=1_000_000)
        assert export(x.host.path, "agency") == []  # nothing of it, not even a part
        await x.crosses_after_restart(up, said_up, killed="host", arrives_at="host")
        # the sender (the host) killed while its file goes down to the guest
        said_down = await x.kill_mid_file(down, sent_by="host", killed="host", after=500_000)
        assert said_down["id"] not in {r["id"] for r in export(x.guest.path, "acme")}
        await x.crosses_after_restart(down, said_down, killed="host", arrives_at="guest")


async def test_kill_9_of_the_guest_mid_file_then_the_file_crosses_whole(
    tmp_path: Path,
) -> None:
    down = PeerFile("down.pdf", "application/pdf", pdf(3_000_000))
    up = PeerFile("up.png", "image/png", png(700, 700, seed=12))  # about 1.4 MiB
    async with _slowly_linked(tmp_path) as x:
        # the receiver (the guest) killed while the host's file comes down
        said_down = await x.kill_mid_file(down, sent_by="host", killed="guest", after=1_000_000)
        assert export(x.guest.path, "acme") == []  # nothing of it, not even a part
        await x.crosses_after_restart(down, said_down, killed="guest", arrives_at="guest")
        # the sender (the guest) killed while its file goes up: it was held, answered 202,
        # so it crosses after the restart
        said_up = await x.kill_mid_file(up, sent_by="guest", killed="guest", after=500_000)
        assert said_up["id"] not in {r["id"] for r in export(x.host.path, "agency")}
        await x.crosses_after_restart(up, said_up, killed="guest", arrives_at="host")
