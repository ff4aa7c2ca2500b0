"""Durable before acknowledged: a Slack event is acked only once it is in every store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
from slackkit import ALICE, LOBBY, SlackServer, bridge_config

from rlkit import Daemon, Room, export


async def test_no_ack_while_the_store_refuses_and_nothing_lost_across_kill_9(
        tmp_path: Path, slack: SlackServer) -> None:
    path, port = bridge_config(tmp_path, slack)
    daemon = Daemon(path, [port])
    await daemon.start()
    try:
        await slack.wait(lambda: slack.connections > 0, what="a Socket Mode connection")
        lock = sqlite3.connect(tmp_path / "acme.db", isolation_level=None, timeout=30)
        lock.execute("BEGIN EXCLUSIVE")  # acme's store cannot commit now
        ts = slack.say(LOBBY, ALICE, "said while a store is stuck")
        await slack.wait(lambda: slack.handed_over(ts), what="the envelope")
        await asyncio.sleep(3.0)
        assert not slack.is_acked(ts)  # not stored, so not acknowledged
        daemon.kill()
        lock.rollback()
        lock.close()
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            room = Room(http, port, "lobby")
            async with room.stream() as stream:
                frames = await stream.wait_for(1, timeout=60)
                await slack.wait(lambda: slack.is_acked(ts), what="the ack after the restart")
                await asyncio.sleep(1.0)
                assert [f["text"] for f in frames] == ["said while a store is stuck"]
                assert len(stream.frames) == 1
        for party in ("agency", "acme"):
            assert [m["text"] for m in export(path, party, "p")] == [
                "said while a store is stuck"]
    finally:
        daemon.cleanup()
