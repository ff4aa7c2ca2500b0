"""A reload that adds a Matrix room to the pipe and then removes the first one: the bridge
keeps its login and its sync; it joins the added room at once, and the removed one is no
longer relayed."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import yaml
from mxpeer import MatrixPeer

import conformance
from conformance import API_CONNECTOR, API_ROOM, PEER_CONNECTOR, PIPE, wait_until
from rlkit import write_config


async def _reload(h: Any, rooms: list[str], count: int) -> None:
    config = yaml.safe_load(h.config.read_text())
    config["pipes"][PIPE]["rooms"] = [{"connector": API_CONNECTOR, "room": API_ROOM}] + [
        {"connector": PEER_CONNECTOR, "room": room} for room in rooms]
    write_config(h.config, config)
    h.daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: h.daemon.log().count("reload done") >= count, 30,
                     lambda: "the reload")


async def _said(peer: MatrixPeer, room_id: str) -> list[str]:
    """The bodies of the messages in a room, oldest first, as its owner reads them."""
    answer = await peer.owner.call("GET", f"/rooms/{room_id}/messages", dir="b", limit="50")
    return [e["content"].get("body", "") for e in reversed(answer["chunk"])
            if e["type"] == "m.room.message"]


async def _posted(peer: MatrixPeer, room_id: str, text: str, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.2)):
        if any(text in body for body in await _said(peer, room_id)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{text!r} was not posted in {room_id}")


async def test_reload_joins_an_added_room_without_a_new_login(
        tmp_path: Any, matrix_room: MatrixPeer) -> None:
    async with conformance.harness(tmp_path, matrix_room) as h:
        first = matrix_room.room_id
        second = await matrix_room.owner.create_room([])  # public: the bot may join it
        alice = await matrix_room.person("Alice")
        await alice.join(second)

        await _reload(h, [first, second], 1)
        assert (f"connector {PEER_CONNECTOR}: rooms +{second} (kept its connection)"
                in h.daemon.log())
        await h.api.post("to both rooms", "bob")
        for room in (first, second):
            await _posted(matrix_room, room, "to both rooms")
        await alice.send(second, {"msgtype": "m.text", "body": "from the second room"})
        [frame] = await h.frames(1)
        assert frame["text"] == "from the second room"

        await _reload(h, [second], 2)
        assert (f"connector {PEER_CONNECTOR}: rooms -{first} (kept its connection)"
                in h.daemon.log())
        await alice.send(first, {"msgtype": "m.text", "body": "not bridged any more"})
        await alice.send(second, {"msgtype": "m.text", "body": "still bridged"})
        frames = await h.frames(2)
        assert [f["text"] for f in frames] == ["from the second room", "still bridged"]
        log = h.daemon.log()
        assert log.count("logged in as") == 1, log
        assert log.count(f"connector {PEER_CONNECTOR} (matrix) started") == 1, log
        assert h.daemon.terminate() == 0, log
