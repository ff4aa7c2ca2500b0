"""A reload that changes a connector's rooms, not its options, keeps its connections.

Two API connectors run pipe ``news`` (agency-api:news <-> acme-api:feed) under load, with a
stream client on each side. Three reloads then change rooms of both connectors: a pipe
between new rooms is added, a room is added to it, a room is removed from it. The two
stream clients must never be disconnected (no close frame, no reconnect) and must get
every message in order; the new rooms must work at once, the removed one must be gone.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp

from rlkit import Room, free_port, plugin_env, run_cli, running, write_config


def _config(ports: dict[str, int], *, extra: list[dict[str, str]] | None = None
            ) -> dict[str, Any]:
    def api(party: str, name: str) -> dict[str, Any]:
        return {"party": party, "type": "api", "listen": f"127.0.0.1:{ports[name]}"}

    config: dict[str, Any] = {
        "parties": {"agency": {"store": "sqlite:///agency.db"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {"agency-api": api("agency", "agency-api"),
                       "acme-api": api("acme", "acme-api")},
        "pipes": {"news": {"rooms": [{"connector": "agency-api", "room": "news"},
                                     {"connector": "acme-api", "room": "feed"}]}},
        "admin": {"listen": f"127.0.0.1:{ports['admin']}", "token": "admin-token-123"},
    }
    if extra is not None:
        config["pipes"]["extra"] = {"rooms": extra}
    return config


class Watcher:
    """One stream client that never reconnects: it records how its stream ended."""

    def __init__(self, http: aiohttp.ClientSession, room: Room) -> None:
        self.http, self.url = http, room.base + "/stream"
        self.frames: list[dict[str, Any]] = []
        self.ended: str | None = None  # how the stream ended, if it did
        self.open = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.open.wait(), 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            async with self.http.ws_connect(self.url) as ws:
                self.open.set()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self.frames.append(json.loads(msg.data))
                self.ended = f"closed with code {ws.close_code}"
        except (aiohttp.ClientError, OSError) as exc:
            self.ended = f"failed: {exc!r}"

    async def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            assert self.ended is None, f"{self.url}: {self.ended}"
            assert time.monotonic() < deadline, f"{self.url}: {len(self.frames)} of {count}"
            await asyncio.sleep(0.02)
        return self.frames


async def _reload(path: Path, config: dict[str, Any]) -> str:
    write_config(path, config)
    done = await asyncio.to_thread(run_cli, "reload", "-c", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_rooms_change_under_load_without_dropping_streams(tmp_path: Path) -> None:
    ports = {n: free_port() for n in ("agency-api", "acme-api", "admin")}
    path = write_config(tmp_path / "roomlink.yaml", _config(ports))
    async with running(path, list(ports.values())) as daemon, \
            aiohttp.ClientSession() as http:
        news = Room(http, ports["agency-api"], "news")
        feed = Room(http, ports["acme-api"], "feed")
        sent: dict[str, list[str]] = {"a": [], "b": []}
        stop = asyncio.Event()

        async def talk(room: Room, who: str) -> None:
            n = 0
            while not stop.is_set():
                body = await room.post(f"{who} {n}", who)  # asserts 202: never refused
                sent[who].append(body["id"])
                n += 1
                await asyncio.sleep(0.005)

        async with Watcher(http, news) as at_agency, Watcher(http, feed) as at_acme:
            load = [asyncio.create_task(talk(news, "a")), asyncio.create_task(talk(feed, "b"))]
            try:
                await asyncio.sleep(0.5)

                # 1. a pipe between new rooms of both running connectors
                desk = [{"connector": "agency-api", "room": "desk"},
                        {"connector": "acme-api", "room": "desk"}]
                out = await _reload(path, _config(ports, extra=desk))
                assert "pipe extra added" in out
                assert "connector agency-api: rooms +desk (kept its connection)" in out
                assert "connector acme-api: rooms +desk (kept its connection)" in out
                assert "restarted" not in out
                desk_agency = Room(http, ports["agency-api"], "desk")
                desk_acme = Room(http, ports["acme-api"], "desk")
                async with Watcher(http, desk_acme) as at_desk:
                    said = await desk_agency.post("on the new pipe", "carol")
                    assert [f["id"] for f in await at_desk.wait_for(1)] == [said["id"]]
                await asyncio.sleep(0.3)

                # 2. a room added to that pipe
                annex = Room(http, ports["acme-api"], "annex")
                out = await _reload(path, _config(ports, extra=[
                    *desk, {"connector": "acme-api", "room": "annex"}]))
                assert "connector acme-api: rooms +annex (kept its connection)" in out
                assert "restarted" not in out
                async with Watcher(http, annex) as at_annex:
                    said = await desk_agency.post("to desk and annex", "carol")
                    assert [f["id"] for f in await at_annex.wait_for(1)] == [said["id"]]
                    await asyncio.sleep(0.3)

                    # 3. that room removed again: its client is told, the room is gone
                    out = await _reload(path, _config(ports, extra=desk))
                    assert "connector acme-api: rooms -annex (kept its connection)" in out
                    assert "room acme-api:annex no longer receives" in out
                    assert "restarted" not in out
                    for _ in range(100):
                        if at_annex.ended is not None:
                            break
                        await asyncio.sleep(0.05)
                    assert at_annex.ended == "closed with code 1001"
                async with http.get(annex.base + "/stream") as resp:
                    assert resp.status == 404
                async with http.post(annex.base + "/messages",
                                     json={"author": "x", "text": "y"}) as resp:
                    assert resp.status == 404
                said = await desk_acme.post("desk still works", "dave")
                async with Watcher(http, desk_agency) as at_desk:
                    await asyncio.sleep(0.2)  # a copy waits for a client: it comes now
                    assert [f["id"] for f in await at_desk.wait_for(1)] == [said["id"]]
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*load)

            # the unrelated streams were never dropped and missed nothing, in order
            await at_acme.wait_for(len(sent["a"]))
            await at_agency.wait_for(len(sent["b"]))
            await asyncio.sleep(0.3)
            assert at_acme.ended is None and at_agency.ended is None
            assert [f["id"] for f in at_acme.frames] == sent["a"]
            assert [f["id"] for f in at_agency.frames] == sent["b"]
            assert len(sent["a"]) > 50 and len(sent["b"]) > 50, "too little load to tell"

        log = daemon.log()
        assert log.count("connector agency-api (api) started") == 1, log
        assert log.count("connector acme-api (api) started") == 1, log
        assert log.count("reload done") == 3, log
        assert daemon.terminate() == 0, daemon.log()


STIFF_PLUGIN = '''
"""A connector that cannot change its rooms while running; it writes what it is sent to
the file named by STIFF_OUT."""
import os

from roomlink.connector.base import Connector, ConnectorOptions
from roomlink.errors import NotSupported

class Options(ConnectorOptions):
    pass

class Stiff(Connector):
    platform = "stiff"
    Options = Options

    async def rooms_changed(self, added, removed):
        raise NotSupported("rooms are fixed at start")

    async def start(self):
        pass

    async def stop(self):
        pass

    def is_ready(self, room):
        return True

    async def wait_ready(self, room):
        return None

    async def send(self, out):
        with open(os.environ["STIFF_OUT"], "a") as f:
            f.write(f"{out.room} {out.text}\\n")
        return out.delivery_key
'''


async def test_a_connector_that_cannot_change_its_rooms_is_restarted(tmp_path: Path) -> None:
    out = tmp_path / "stiff.out"
    env = {**plugin_env(tmp_path, "stiff_plugin", textwrap.dedent(STIFF_PLUGIN), "stiff"),
           "STIFF_OUT": str(out)}
    ports = {n: free_port() for n in ("api", "admin")}

    def config(*rooms: str) -> dict[str, Any]:
        return {
            "parties": {p: {"store": f"sqlite:///{tmp_path / p}.db"} for p in ("a", "b")},
            "connectors": {"stiff": {"party": "a", "type": "stiff"},
                           "api": {"party": "b", "type": "api",
                                   "listen": f"127.0.0.1:{ports['api']}"}},
            "pipes": {"p": {"rooms": [{"connector": "api", "room": "r"}]
                            + [{"connector": "stiff", "room": room} for room in rooms]}},
            "admin": {"listen": f"127.0.0.1:{ports['admin']}", "token": "admin-token-123"},
        }

    path = write_config(tmp_path / "roomlink.yaml", config("x"))
    async with running(path, list(ports.values()), env) as daemon, \
            aiohttp.ClientSession() as http:
        write_config(path, config("x", "y"))
        done = await asyncio.to_thread(run_cli, "reload", "-c", str(path), env=env)
        assert done.returncode == 0, done.stderr
        assert "connector stiff restarted (could not change its rooms while running)" in (
            done.stdout)
        await Room(http, ports["api"], "r").post("to x and y", "bob")
        for _ in range(200):
            if out.exists() and len(out.read_text().splitlines()) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(out.read_text().splitlines()) == ["x to x and y", "y to x and y"]
        log = daemon.log()
        assert log.count("connector stiff (stiff) started") == 2, log
        assert daemon.terminate() == 0, log
