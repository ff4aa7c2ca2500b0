"""A change (edit, delete) a platform hands over twice is recorded once.

Slack re-delivers an unacknowledged event and Telegram repeats an unconfirmed update after
a crash: the second reading carries the change event's own id again, and must not become
a second edit in every party's record.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import aiohttp

from rlkit import Room, export, free_port, plugin_env, running, write_config

REPEATER_PLUGIN = '''
"""Hands over one message, then one edit and one delete, each twice."""
from roomlink.connector.base import Connector, ConnectorOptions
from roomlink.message.model import Inbound, InboundAuthor, Kind

class Options(ConnectorOptions):
    pass

class Repeater(Connector):
    platform = "repeater"
    Options = Options

    async def start(self):
        who = InboundAuthor("carol", "U1")
        await self.ctx.accept(Inbound(room="x", author=who, text="v1", native_id="m1"))
        for _ in range(2):
            await self.ctx.accept(Inbound(room="x", author=who, text="v2", kind=Kind.EDIT,
                                          native_id="e1", target_native="m1"))
        for _ in range(2):
            await self.ctx.accept(Inbound(room="x", author=who, kind=Kind.DELETE,
                                          native_id="d1", target_native="m1"))
        # a change without an id of its own is a new change each time
        for _ in range(2):
            await self.ctx.accept(Inbound(room="x", author=who, text="v3", kind=Kind.EDIT,
                                          target_native="m1"))

    async def stop(self):
        pass

    def is_ready(self, room):
        return True

    async def wait_ready(self, room):
        return None

    async def send(self, out):
        return out.delivery_key
'''


async def test_a_change_handed_over_twice_is_recorded_once(tmp_path: Path) -> None:
    env = plugin_env(tmp_path, "repeater_plugin", textwrap.dedent(REPEATER_PLUGIN), "repeater")
    port = free_port()
    config = {
        "parties": {p: {"store": f"sqlite:///{tmp_path / p}.db"} for p in ("a", "b")},
        "connectors": {
            "rep": {"party": "a", "type": "repeater"},
            "api": {"party": "b", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {"p": {"rooms": [{"connector": "rep", "room": "x"},
                                  {"connector": "api", "room": "r"}]}},
    }
    path = write_config(tmp_path / "roomlink.yaml", config)
    async with running(path, [port], env) as daemon, aiohttp.ClientSession() as http:
        async with Room(http, port, "r").stream() as stream:
            frames = await stream.wait_for(5)
        assert daemon.terminate() == 0
    assert [(f["kind"], f["text"]) for f in frames] == [
        ("message", "v1"), ("edit", "v2"), ("delete", ""), ("edit", "v3"), ("edit", "v3")]
    for party in ("a", "b"):
        assert [m["kind"] for m in export(path, party, env=env)] == [
            "message", "edit", "delete", "edit", "edit"]
