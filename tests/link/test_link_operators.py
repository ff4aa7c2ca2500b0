"""What an operator sees of a link (status page, /api/status, metrics) and a link added
and removed by a live reload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from fedkit import Instance, digest, star

from rlkit import Room, free_port, run_cli, running


async def _status(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{port}/api/status") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def _until_status(http: aiohttp.ClientSession, port: int, name: str,
                        check: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await _status(http, port)
        link = next((c for c in status["connectors"] if c["name"] == name), None)
        if link is not None and check(link):
            return link
        assert time.monotonic() < deadline, (name, link)
        await asyncio.sleep(0.1)


async def test_status_and_metrics_show_each_link(tmp_path: Path) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    ports = {"agency": free_port(), "acme": free_port()}
    for inst in (host, guest):
        inst.config["admin"] = {"listen": f"127.0.0.1:{ports[inst.name]}"}
        inst.write()
    async with running(host.path, [*host.ports, ports["agency"]]) as hd, \
            aiohttp.ClientSession() as http:
        # the guest is not there yet: the host's link is down, its messages wait to cross
        await Room(http, host.api_port, "lobby").post("early", "alice")
        link = await _until_status(http, ports["agency"], "to-acme",
                                   lambda c: c["waiting"] == 1)
        assert link["connected"] is False and link["type"] == "link"
        assert link["details"] == {"role": "host", "peer key": guest.line,
                                   "last message": "never"}
        async with running(guest.path, [*guest.ports, ports["acme"]]) as gd:
            await _until_status(http, ports["agency"], "to-acme",
                                lambda c: c["connected"] and c["waiting"] == 0)
            up = await _until_status(http, ports["acme"], "to-agency",
                                     lambda c: c["connected"])
            assert up["details"]["role"] == "guest" and up["details"]["peer key"] == host.line
            await Room(http, guest.api_port, "lobby").post("hello", "bob")
            link = await _until_status(http, ports["agency"], "to-acme",
                                       lambda c: c["details"]["last message"] != "never")
            page = await (await http.get(f"http://127.0.0.1:{ports['agency']}/")).text()
            assert guest.line in page and "role: host" in page
            # the host's early message and the guest's own, placed, came in through the link
            wanted = ('roomlink_link_received_total{connector="to-agency"} 2.0',
                      'roomlink_link_held_total{connector="to-agency"} 1.0')
            deadline = time.monotonic() + 60
            while True:
                async with http.get(f"http://127.0.0.1:{ports['acme']}/metrics") as resp:
                    metrics = await resp.text()
                if all(line in metrics for line in wanted):
                    break
                assert time.monotonic() < deadline, metrics
                await asyncio.sleep(0.1)
            # the host gone: what the guest says now is held, waiting to cross
            assert hd.terminate() == 0
            await Room(http, guest.api_port, "lobby").post("anyone?", "bob")
            held = await _until_status(http, ports["acme"], "to-agency",
                                       lambda c: not c["connected"] and c["waiting"] == 1)
            assert held["details"]["role"] == "guest"
            assert gd.terminate() == 0


async def _until_log(daemon: Any, text: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while daemon.log().count(text) < count:
        assert time.monotonic() < deadline, daemon.log()
        await asyncio.sleep(0.1)


async def test_a_reload_adds_and_removes_a_link(tmp_path: Path) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    joined = dict(guest.config)
    alone = {**guest.config, "connectors": {"acme-api": guest.config["connectors"]["acme-api"]},
             "pipes": {"local": {"rooms": [{"connector": "acme-api", "room": "lobby"},
                                           {"connector": "acme-api", "room": "side"}]}}}
    guest.config = alone
    guest.write()
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h = Room(http, host.api_port, "lobby")
        async with h.stream() as hs:
            guest.config = joined
            guest.write()
            done = await asyncio.to_thread(run_cli, "reload", "-c", str(guest.path))
            assert done.returncode == 0, done.stdout + done.stderr
            await _until_log(gd, "reload done", 1)
            await Room(http, guest.api_port, "lobby").post("joined by a reload", "bob")
            assert [f["text"] for f in await hs.wait_for(1)] == ["joined by a reload"]
            guest.config = alone
            guest.write()
            done = await asyncio.to_thread(run_cli, "reload", "-c", str(guest.path))
            assert done.returncode == 0, done.stdout + done.stderr
            await _until_log(gd, "reload done", 2)
            await _until_log(hd, "to-acme: link with 127.0.0.1 down", 1)
        assert hd.terminate() == 0 and gd.terminate() == 0
    assert digest(host).split(" count=")[1].startswith("1 ")
