"""Live reload through the real process, under load on a pipe that does not change.

Two clients talk without pause through pipe ``main`` (agency-api:lobby <-> acme-api:lobby)
while the config is reloaded four times: a pipe and a party are added, a room is
removed, a connector's options change, and the file is broken. Every message accepted
on ``main`` must arrive exactly once, in order, and its connectors must never restart.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp

from rlkit import Daemon, Room, export, free_port, run_cli, running, wait_port, write_config


def _config(ports: dict[str, int], *, extra: bool = False, s2: bool = True,
            side_limit: int = 65536) -> dict[str, Any]:
    def api(party: str, name: str, **kw: Any) -> dict[str, Any]:
        return {"party": party, "type": "api", "listen": f"127.0.0.1:{ports[name]}", **kw}

    config: dict[str, Any] = {
        "parties": {"agency": {"store": "sqlite:///agency.db"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {
            "agency-api": api("agency", "agency-api"),
            "acme-api": api("acme", "acme-api"),
            "agency-side": api("agency", "agency-side", max_text_length=side_limit),
            "acme-side": api("acme", "acme-side"),
        },
        "pipes": {
            "main": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                               {"connector": "acme-api", "room": "lobby"}]},
            "side": {"rooms": [{"connector": "agency-side", "room": "s1"},
                               {"connector": "acme-side", "room": "s1"}]
                     + ([{"connector": "acme-side", "room": "s2"}] if s2 else [])},
        },
        "delivery": {"shutdown_grace": 5.0},
        "admin": {"listen": f"127.0.0.1:{ports['admin']}", "token": "admin-token-123"},
    }
    if extra:  # a new party with its own store, and a new pipe into an existing room
        config["parties"]["contractor"] = {"store": "sqlite:///contractor.db"}
        config["connectors"]["contractor-api"] = api("contractor", "contractor-api")
        config["pipes"]["extra"] = {"rooms": [{"connector": "contractor-api", "room": "hall"},
                                              {"connector": "agency-side", "room": "s1"}]}
    return config


async def _wait_log(daemon: Daemon, pattern: str, count: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = daemon.log()
        if len(re.findall(pattern, log)) >= count:
            return log
        assert time.monotonic() < deadline, f"no {count}x {pattern!r} in the log:\n{log}"
        await asyncio.sleep(0.05)


async def test_reload_under_load(tmp_path: Path) -> None:
    names = ["agency-api", "acme-api", "agency-side", "acme-side", "contractor-api", "admin"]
    ports = {n: free_port() for n in names}
    path = tmp_path / "roomlink.yaml"
    write_config(path, _config(ports))
    listen = [ports[n] for n in names if n != "contractor-api"]
    async with running(path, listen) as daemon, aiohttp.ClientSession() as http:
        lobby_a = Room(http, ports["agency-api"], "lobby")
        lobby_b = Room(http, ports["acme-api"], "lobby")
        s1_agency = Room(http, ports["agency-side"], "s1")
        s1_acme = Room(http, ports["acme-side"], "s1")
        s2_acme = Room(http, ports["acme-side"], "s2")
        sent: dict[str, list[str]] = {"a": [], "b": []}
        stop = asyncio.Event()

        async def talk(room: Room, who: str) -> None:
            n = 0
            while not stop.is_set():
                body = await room.post(f"{who} {n}", who)  # asserts 202: never refused
                sent[who].append(body["id"])
                n += 1
                await asyncio.sleep(0.005)

        async with lobby_a.stream() as watch_a, lobby_b.stream() as watch_b, \
                s1_agency.stream() as watch_s1, s1_acme.stream() as watch_s1b:
            load = [asyncio.create_task(talk(lobby_a, "a")),
                    asyncio.create_task(talk(lobby_b, "b"))]
            try:
                await asyncio.sleep(0.5)

                # 1. a new party, connector and pipe, through `roomlink reload` (admin server)
                write_config(path, _config(ports, extra=True))
                done = await asyncio.to_thread(run_cli, "reload", "-c", str(path))
                assert done.returncode == 0, done.stderr
                assert "pipe extra added" in done.stdout
                assert "party contractor added" in done.stdout
                assert "restarted" not in done.stdout  # agency-side kept s1: no restart
                hall = Room(http, ports["contractor-api"], "hall")
                said = await hall.post("hello from the new pipe", "carol")
                frames = await watch_s1.wait_for(1)
                assert frames[-1]["id"] == said["id"] and frames[-1]["pipe"] == "extra"

                # 2. remove a room (SIGHUP): a copy that waited for s2 stays pending
                waiting = await s1_agency.post("for s1 and s2", "alice")
                await watch_s1b.wait_for(1)
                assert daemon.proc is not None
                write_config(path, _config(ports, extra=True, s2=False))
                daemon.proc.send_signal(signal.SIGHUP)
                log = await _wait_log(daemon, r"reload done", 2)
                assert "room acme-side:s2 no longer receives" in log
                async with http.get(s2_acme.base + "/stream") as resp:
                    assert resp.status == 404  # the room is gone from its connector
                pending = run_cli("outbox", "list", "-c", str(path), "--party", "acme",
                                  "--state", "pending")
                assert f"{waiting['id']}\tacme-side:s2\tpending" in pending.stdout

                # 3. change a connector's options: it alone restarts
                write_config(path, _config(ports, extra=True, s2=False, side_limit=1000))
                daemon.proc.send_signal(signal.SIGHUP)
                log = await _wait_log(daemon, r"reload done", 3)
                assert "connector agency-side restarted (changed)" in log
                async with http.post(s1_agency.base + "/messages",
                                     json={"author": "a", "text": "x" * 1001}) as resp:
                    assert resp.status == 413  # the new option is in force

                # 4. a broken file is rejected with check's own words; the config stays
                path.write_text(path.read_text().replace("room: lobby", "rom: lobby", 1))
                check = run_cli("check", "-c", str(path))
                assert check.returncode == 2
                daemon.proc.send_signal(signal.SIGHUP)
                log = await _wait_log(daemon, r"reload rejected", 1)
                for line in check.stderr.strip().splitlines():
                    assert re.search(r"ERROR roomlink\.reload: " + re.escape(line), log), log
                done = await asyncio.to_thread(run_cli, "reload", "-c", str(path))
                assert done.returncode == 2 and check.stderr.strip() in done.stderr

                # 5. the removed room comes back: what waited for it arrives
                write_config(path, _config(ports, extra=True, s2=True, side_limit=1000))
                daemon.proc.send_signal(signal.SIGHUP)
                await _wait_log(daemon, r"reload done", 4)
                async with s2_acme.stream() as watch_s2:
                    await watch_s2.wait_for(1)
                    await asyncio.sleep(0.2)
                    assert [f["id"] for f in watch_s2.frames] == [waiting["id"]]
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*load)

            # nothing lost, nothing doubled, in order, on the pipe that never changed
            frames_b = await watch_b.wait_for(len(sent["a"]))
            frames_a = await watch_a.wait_for(len(sent["b"]))
            await asyncio.sleep(0.3)
            assert [f["id"] for f in watch_b.frames] == sent["a"]
            assert [f["id"] for f in watch_a.frames] == sent["b"]
            assert len(frames_a) > 50 and len(frames_b) > 50, "too little load to tell"

        log = daemon.log()
        # the connectors of the unchanged pipe never restarted
        assert log.count("connector agency-api (api) started") == 1, log
        assert log.count("connector acme-api (api) started") == 1, log
        assert log.count("connector agency-side (api) started") == 2, log
        # losing room s2 did not restart acme-side: it kept its connection
        assert log.count("connector acme-side (api) started") == 1, log
        assert "connector acme-side: rooms -s2 (kept its connection)" in log
        assert daemon.terminate() == 0, daemon.log()

    # the new party keeps its own record of its pipe
    record = export(path, "contractor")
    assert [r["pipe"] for r in record] == ["extra", "extra"]
    assert record[0]["id"] == said["id"] and record[1]["text"] == "for s1 and s2"


async def test_reload_through_the_pid_file(tmp_path: Path) -> None:
    ports = {n: free_port() for n in ("agency-api", "acme-api", "agency-side", "acme-side")}
    config = _config({**ports, "admin": 0})
    del config["admin"]
    # a secret only the daemon's environment has: this shell cannot check the file whole
    config["connectors"]["acme-side"]["token"] = "${ACME_SIDE_TOKEN}"
    path = write_config(tmp_path / "roomlink.yaml", config)
    pid_file = tmp_path / "roomlink.pid"
    daemon = Daemon(path, list(ports.values()), env={"ROOMLINK_PID_FILE": str(pid_file),
                                                     "ACME_SIDE_TOKEN": "side-secret"})
    await daemon.start()
    try:
        assert daemon.proc is not None
        assert pid_file.read_text().strip() == str(daemon.proc.pid)
        config["pipes"]["side"]["rooms"].pop()
        write_config(path, config)
        done = run_cli("reload", "-c", str(path), env={"ROOMLINK_PID_FILE": str(pid_file)})
        assert done.returncode == 0 and f"pid {daemon.proc.pid}" in done.stdout
        assert "ACME_SIDE_TOKEN" not in done.stdout and "not set here" in done.stderr
        await _wait_log(daemon, r"reload done: .*room acme-side:s2 no longer receives", 1)
        # a new connector that cannot start (its port is taken) is tried again by the
        # next reload, even of the same file, once the port is free
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        late = taken.getsockname()[1]
        config["connectors"]["late-api"] = {"party": "acme", "type": "api",
                                            "listen": f"127.0.0.1:{late}"}
        write_config(path, config)
        daemon.proc.send_signal(signal.SIGHUP)
        await _wait_log(daemon, r"connector late-api could not start", 1)
        taken.close()
        daemon.proc.send_signal(signal.SIGHUP)
        await _wait_log(daemon, r"connector late-api \(api\) started", 1)
        await wait_port(late)

        # a file with a real error is refused here, and the daemon is left alone
        path.write_text(path.read_text().replace("room: s1", "rom: s1", 1))
        done = run_cli("reload", "-c", str(path), env={"ROOMLINK_PID_FILE": str(pid_file)})
        assert done.returncode == 2 and "did you mean 'room'" in done.stderr
        assert "reload rejected" not in daemon.log()
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
    assert not pid_file.exists()
    path.write_text(path.read_text().replace("rom: s1", "room: s1", 1))
    done = run_cli("reload", "-c", str(path), env={"ROOMLINK_PID_FILE": str(pid_file)})
    assert done.returncode == 1 and "no running roomlink" in done.stderr
