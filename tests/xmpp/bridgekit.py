"""The real ``roomlink`` process linking a room of the test Prosody with an API room."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from xmppkit import BRIDGE_NICK, MUC, Person, Prosody

from conformance import wait_until
from rlkit import Daemon, Room, Stream, free_port, write_config

ROOM = f"project@{MUC}"


@dataclass
class Bridge:
    daemon: Daemon
    api: Room
    stream: Stream
    prosody: Prosody
    watcher: Person

    def frames(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.stream.frames if kind is None or f["kind"] == kind]

    async def wait_frames(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        return (await self.stream.wait_for(count, timeout))[:count]

    def bodies(self) -> list[str]:
        """What the bridge said in the room, as the watcher heard it (no history)."""
        return [s.body for s in self.watcher.seen if s.nick == BRIDGE_NICK and not s.delayed]

    async def wait_bodies(self, count: int, timeout: float = 30) -> list[str]:
        await wait_until(lambda: len(self.bodies()) >= count, timeout,
                         lambda: f"{count} messages from the bridge: {self.bodies()}")
        return self.bodies()

    async def wait_in_room(self, timeout: float = 30) -> None:
        """Until the watcher sees the bridge in the room (again)."""
        muc = self.watcher.plugin["xep_0045"]
        await wait_until(lambda: BRIDGE_NICK in muc.get_roster(ROOM), timeout,
                         lambda: "the bridge in the room")


@contextlib.asynccontextmanager
async def bridge(tmp_path: Path, prosody: Prosody, options: dict[str, Any] | None = None,
                 **pipe: Any) -> AsyncIterator[Bridge]:
    """roomlink running with the pipe ``p``: the room on Prosody and the API room ``lobby``;
    a person called ``watcher`` in the room from the start. ``options`` override the
    connector's."""
    port = free_port()
    config = write_config(tmp_path / "roomlink.yaml", {
        "parties": {p: {"store": f"sqlite:///{tmp_path / p}.db"} for p in ("agency", "acme")},
        "connectors": {
            "chat": {"party": "agency", "type": "xmpp", **prosody.bridge_options(),
                     **(options or {})},
            "web": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {"p": {"rooms": [{"connector": "chat", "room": ROOM},
                                  {"connector": "web", "room": "lobby"}], **pipe}},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0},
    })
    watcher = await Person.join(prosody, ROOM, "watcher")
    daemon = Daemon(config, [port])
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Room(http, port, "lobby")
            async with api.stream() as stream:
                b = Bridge(daemon, api, stream, prosody, watcher)
                await b.wait_in_room()
                yield b
    finally:
        daemon.cleanup()
        await watcher.leave()
