"""Test kit for the Slack connector: the local Slack server (server.py, loaded under its
own name: other connectors' tests have a server.py too), and a roomlink config linking
one Slack channel with an API room."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from rlkit import Daemon, Room, Stream, free_port, load_beside, running, write_config

server = load_beside(__file__, "server", "roomlink_tests_slack_server")
SlackServer = server.SlackServer
slack_server = server.slack_server
pings = server.pings
sha256 = server.sha256
Download = server.Download
APP_TOKEN, BOT_TOKEN, BOT_ID, BOT_USER = (server.APP_TOKEN, server.BOT_TOKEN, server.BOT_ID,
                                          server.BOT_USER)

LOBBY, OTHER, PRIVATE = "C0LOBBY01", "C0OTHER01", "G0SECRET1"
ALICE, BOB = "U0ALICE01", "U0BOB0001"


def slack_options(server: SlackServer, **extra: Any) -> dict[str, Any]:
    return {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_url": server.api_url,
            "reconnect_initial": 0.2, "reconnect_max": 1.0, "ping_interval": 2.0, **extra}


def bridge_config(tmp_path: Path, server: SlackServer, room: str = "#acme-project",
                  extra_rooms: list[str] | None = None, **options: Any) -> tuple[Path, int]:
    """agency's Slack channel ``room`` <-> acme's API room ``lobby``; returns (config, port)."""
    port = free_port()
    rooms = [{"connector": "agency-slack", "room": room},
             {"connector": "acme-api", "room": "lobby"}]
    rooms += [{"connector": "agency-slack", "room": r} for r in extra_rooms or []]
    config = write_config(tmp_path / "roomlink.yaml", {
        "parties": {p: {"store": f"sqlite:///{tmp_path}/{p}.db"} for p in ("agency", "acme")},
        "connectors": {
            "agency-slack": {"party": "agency", "type": "slack",
                             **slack_options(server, **options)},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {"p": {"rooms": rooms}},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0},
    })
    return config, port


@contextlib.asynccontextmanager
async def bridged(tmp_path: Path, server: SlackServer, connect_timeout: float = 20,
                  **config: Any) -> AsyncIterator[tuple[Daemon, Room, Stream]]:
    """roomlink running :func:`bridge_config`'s link (``config`` goes to it), acme's API
    room with its stream open, once the connector's Socket Mode connection is up."""
    path, port = bridge_config(tmp_path, server, **config)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        async with room.stream() as stream:
            await server.wait(lambda: server.connections > 0, connect_timeout,
                              "a Socket Mode connection")
            yield daemon, room, stream


async def wait_delivered(db: Path, timeout: float = 20) -> None:
    """Until no copy waits in that party's store: the bridge knows the ts of every post it
    made (a reply to a post before then answers, for roomlink, a message it cannot name)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            (pending,) = conn.execute(
                "SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} copies still pending in {db.name}"
        await asyncio.sleep(0.05)
