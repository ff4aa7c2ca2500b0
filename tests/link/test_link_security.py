"""Who may speak on a link: keys proven on every connection, and everything a peer sends
checked (its parties, its conversations, its frames) without the link or daemon falling."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from fedkit import Instance, star
from roomlink_connectors.link.wire import (
    nonce,
    parse_public,
    private_key,
    prove,
    public_line,
    verify,
)

from rlkit import Room, export, running
from roomlink.message.model import Author, Message, new_message_id, utcnow
from roomlink.record.sign import keygen


async def test_a_wrong_key_is_refused_before_any_message_each_side_says_so(
    tmp_path: Path,
) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    impostor = Instance("acme", tmp_path / "impostor", api_port=guest.api_port)
    star(host, [impostor])  # the host expects the impostor's key; the guest has its own
    host.config["connectors"]["to-acme"]["peer_key"] = impostor.line
    host.write()
    guest.write()
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        await hd.wait_log("to-acme: refused a peer whose key is not this link's peer_key")
        await gd.wait_log("to-agency: the host refused this instance: this instance does "
                       "not know your key")
        await Room(http, guest.api_port, "lobby").post("may I?", "mallory")
        await Room(http, host.api_port, "lobby").post("not for you", "alice")
        await asyncio.sleep(1)  # the guest keeps trying meanwhile, and keeps being refused
        assert hd.terminate() == 0 and gd.terminate() == 0
    assert [r["text"] for r in export(host.path, "agency")] == ["not for you"]
    assert export(guest.path, "acme") == []  # its message is held, never placed

    # the other way round: a host that is not the one the guest knows
    other = keygen()[0]
    guest.config["connectors"]["to-agency"]["peer_key"] = Instance(
        "x", tmp_path / "x", key=other).line
    guest.write()
    host.config["connectors"]["to-acme"]["peer_key"] = guest.line
    host.write()
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd:
        await gd.wait_log("to-agency: refused a host whose key is not this link's peer_key")
        await hd.wait_log("to-acme: the peer refused this instance: this instance does not "
                       "know your key")
        assert "linked with" not in gd.log() and "linked with" not in hd.log()


def _message(text: str, party: str, origin: str = "acme-api", **kw: Any) -> dict[str, Any]:
    m = Message(id=new_message_id("project", _ref(origin), text), pipe="project",
                origin_connector=origin, origin_room="lobby",
                author=Author(name="mallory", party=party, platform="api"), text=text,
                ts=utcnow(), **kw)
    return m.model_dump(mode="json")


def _ref(origin: str) -> Any:
    from roomlink.message.model import RoomRef

    return RoomRef(origin, "lobby")


async def _handshake(http: aiohttp.ClientSession, port: int, key_pem: str, host_line: str
                     ) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"ws://127.0.0.1:{port}")
    key, mine = private_key(key_pem), nonce()
    await ws.send_json({"t": "hello", "v": 1, "key": public_line(key), "nonce": mine})
    hello = await ws.receive_json(timeout=20)
    assert verify(parse_public(host_line), "host", mine, hello["nonce"], hello["sig"])
    await ws.send_json({"t": "proof", "sig": prove(key, "guest", hello["nonce"], mine)})
    assert (await ws.receive_json(timeout=20))["t"] == "ready"
    return ws


async def _answer(ws: aiohttp.ClientWebSocketResponse, n: int) -> dict[str, Any]:
    while True:
        got: dict[str, Any] = await ws.receive_json(timeout=20)
        if got["t"] == "msg":  # the host's own messages coming down: take them
            await ws.send_json({"t": "ok", "n": got["n"]})
        elif got.get("n") == n:
            return got


async def test_a_peer_speaks_only_for_its_parties_into_its_conversations(
    tmp_path: Path,
) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    port = host.link_ports["acme"]
    async with running(host.path, host.ports) as hd, aiohttp.ClientSession() as http:
        room = Room(http, host.api_port, "lobby")
        async with room.stream() as stream:
            ws = await _handshake(http, port, guest.key, host.line)
            hostile = [
                ("room", "project", _message("I am the agency", "agency")),
                ("room", "project", _message("I am the contractor", "contractor")),
                ("room", "secret", _message("into a conversation not shared", "acme")),
                ("room", "project", _message("from the host's own room", "acme",
                                             origin="agency-api")),
                ("room", "project", _message("a reply to nothing", "acme", reply_to="x" * 32)),
            ]
            for n, (_, conv, body) in enumerate(hostile, start=1):
                await ws.send_str(json.dumps({"t": "msg", "n": n, "room": conv, "m": body}))
                answer = await _answer(ws, n)
                assert answer["t"] == "no", answer
            await ws.send_str(json.dumps({"t": "msg", "n": 9, "room": "project",
                                          "m": _message("a fair message", "acme")}))
            assert (await _answer(ws, 9))["t"] == "ok"
            frames = await stream.wait_for(1)
            assert [(f["text"], f["author"]["party"]) for f in frames] == [
                ("a fair message", "acme")]
            await hd.wait_log("refused a message from the linked instance: party 'agency' "
                           "is not one this link's peer may speak for")
            await hd.wait_log("'secret' is not shared on this link")
            # a frame that breaks the protocol closes the link with a reason
            await ws.send_str("{not json")
            closed = await ws.receive(timeout=20)
            assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4400
            assert closed.extra == "a frame that is not JSON"
            await hd.wait_log("to-acme: closing the link: the peer sent a frame that is not")
            # an oversized frame too; the daemon keeps serving
            ws = await _handshake(http, port, guest.key, host.line)
            await ws.send_str(json.dumps({"t": "msg", "n": 1, "room": "project",
                                          "m": _message("x" * 2_000_000, "acme")}))
            closed = await ws.receive(timeout=20)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await room.post("still here", "alice")
        assert hd.terminate() == 0
    assert [r["text"] for r in export(host.path, "agency")] == ["a fair message", "still here"]


async def test_a_guest_named_like_the_host_never_writes_under_its_party(tmp_path: Path) -> None:
    host = Instance("agency", tmp_path / "agency")
    guest = Instance("agency", tmp_path / "guest")  # the guest's operator chose the same name
    star(host, [guest])
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        await Room(http, guest.api_port, "lobby").post("in the agency's name", "mallory")
        await hd.wait_log("claims party agency, a party of this instance")
        await gd.wait_log("the host refused message")
        assert hd.terminate() == 0 and gd.terminate() == 0
    assert export(host.path, "agency") == []
