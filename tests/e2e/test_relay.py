"""End to end through the real roomlink process: three parties, three API rooms, one pipe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from rlkit import Room, export, free_port, running, write_config

PARTIES = ("agency", "acme", "contractor")


def three_party_config(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    ports = {p: free_port() for p in PARTIES}
    config = {
        "parties": {p: {"store": f"sqlite:///{p}.db"} for p in PARTIES},
        "connectors": {
            f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{ports[p]}"}
            for p in PARTIES
        },
        "pipes": {"project": {"rooms": [{"connector": f"{p}-api", "room": "lobby"}
                                        for p in PARTIES]}},
    }
    return write_config(tmp_path / "roomlink.yaml", config), ports


async def test_three_parties_every_message_reaches_the_others_and_every_record(
    tmp_path: Path,
) -> None:
    path, ports = three_party_config(tmp_path)
    per_room = 20
    async with running(path, list(ports.values())) as daemon, aiohttp.ClientSession() as http:
        rooms = {p: Room(http, ports[p], "lobby") for p in PARTIES}
        streams = {p: rooms[p].stream() for p in PARTIES}
        for s in streams.values():
            await s.__aenter__()
        sent: dict[str, list[str]] = {p: [] for p in PARTIES}

        async def talk(party: str) -> None:
            for i in range(per_room):
                body = await rooms[party].post(f"**{party}** says {i}", f"{party}-person")
                sent[party].append(body["id"])

        await asyncio.gather(*(talk(p) for p in PARTIES))
        for party in PARTIES:
            frames = await streams[party].wait_for(2 * per_room)
            await asyncio.sleep(0.2)  # nothing more (no echo of its own) may arrive
            assert len(frames) == 2 * per_room, frames
            for other in PARTIES:
                got = [f for f in frames if f["author"]["party"] == other]
                if other == party:
                    assert got == [], "a room got its own messages back"
                    continue
                assert [f["id"] for f in got] == sent[other]  # all, in order
                assert all(f["author"] == {"name": f"{other}-person", "party": other,
                                           "platform": "api"} for f in got)
                assert got[0]["text"] == f"**{other}** says 0"
                assert got[0]["pipe"] == "project" and got[0]["kind"] == "message"
        for s in streams.values():
            await s.__aexit__(None, None, None)
        assert daemon.terminate() == 0, daemon.log()

    records = {p: export(path, p) for p in PARTIES}
    all_ids = {i for ids in sent.values() for i in ids}
    for party in PARTIES:
        assert len(records[party]) == 3 * per_room
        assert {r["id"] for r in records[party]} == all_ids
    orders = [[r["id"] for r in records[p]] for p in PARTIES]
    assert orders[0] == orders[1] == orders[2], "parties disagree on the order"
    first: dict[str, Any] = records["acme"][0]
    assert first["author"]["party"] in PARTIES and first["pipe"] == "project"


async def test_direction_and_nick_format(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    config = {
        "parties": {"a": {"store": "sqlite:///a.db"}},
        "connectors": {f"c{i}": {"party": "a", "type": "api", "listen": f"127.0.0.1:{port}"}
                       for i, port in enumerate(ports)},
        "pipes": {"p": {
            "nick_format": "[{party}/{platform}] {nick}",
            "rooms": [
                {"connector": "c0", "room": "r", "direction": "in"},
                {"connector": "c1", "room": "r", "direction": "out"},
                {"connector": "c2", "room": "r"},
            ]}},
    }
    path = write_config(tmp_path / "roomlink.yaml", config)
    async with running(path, ports), aiohttp.ClientSession() as http:
        r0, r1, r2 = (Room(http, port, "r") for port in ports)
        async with r0.stream() as s0, r1.stream() as s1, r2.stream() as s2:
            await r0.post("from the in-only room", "ann")
            await r2.post("from the two-way room", "bob")
            async with http.post(f"{r1.base}/messages", json={"text": "x", "author": "c"}) as resp:
                assert resp.status == 403  # an output-only room takes no input
            await s1.wait_for(2)
            await s2.wait_for(1)
            await asyncio.sleep(0.3)
            assert [f["text"] for f in s1.frames] == ["from the in-only room",
                                                      "from the two-way room"]
            assert [f["text"] for f in s2.frames] == ["from the in-only room"]
            assert s0.frames == []  # direction: in receives nothing
            assert s1.frames[0]["display_name"] == "[a/api] ann"


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with session.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


async def test_replies_edits_and_deletes_keep_their_mapping_across_a_restart(
    tmp_path: Path,
) -> None:
    path, ports = three_party_config(tmp_path)
    agency = f"http://127.0.0.1:{ports['agency']}/v1/rooms/lobby/messages"
    acme = f"http://127.0.0.1:{ports['acme']}/v1/rooms/lobby/messages"
    all_ports = list(ports.values())
    async with aiohttp.ClientSession() as session:
        async with running(path, all_ports) as daemon:
            original = (await Room(session, ports["agency"], "lobby").post("v1", "alice"))["id"]
            status, answer = await _send(
                session, "POST", acme, {"text": "re", "author": "bob", "reply_to": original}
            )
            assert status == 202
            reply = answer["id"]
            assert daemon.terminate() == 0
        async with running(path, all_ports):  # a new process: only the stores remember
            # only the room a message was said in may change it
            status, _ = await _send(
                session, "PATCH", f"{acme}/{original}", {"text": "hijack", "author": "bob"}
            )
            assert status == 404
            status, _ = await _send(
                session, "PATCH", f"{agency}/{original}", {"text": "v2", "author": "alice"}
            )
            assert status == 202
            status, _ = await _send(session, "DELETE", f"{agency}/{original}", {"author": "alice"})
            assert status == 202
            async with Room(session, ports["contractor"], "lobby").stream() as contractor:
                frames = await contractor.wait_for(4)
            async with Room(session, ports["agency"], "lobby").stream() as own:
                [reply_frame] = await own.wait_for(1)
    got = [(f["kind"], f["text"], f.get("reply_to"), f.get("target")) for f in frames]
    assert got == [
        ("message", "v1", None, None),
        ("message", "re", original, None),
        ("edit", "v2", None, original),
        ("delete", "", None, original),
    ]
    assert reply_frame["id"] == reply and reply_frame["reply_to"] == original
    for party in PARTIES:  # the whole story stays on record, for any later dispute
        record = [(m["kind"], m["text"], m["target"]) for m in export(path, party)]
        assert record == [
            ("message", "v1", None),
            ("message", "re", None),
            ("edit", "v2", original),
            ("delete", "", original),
        ]
