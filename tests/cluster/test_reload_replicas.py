"""A live reload sent to one replica reaches every replica (through PostgreSQL's NOTIFY):
real ``roomlink run`` processes of one config on the real PostgreSQL stores."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from replicakit import Replica, cluster_config, databases, owners, wait_until
from rlkit import Room, Stream, free_port

PARTIES = ("agency", "acme")
NAMES = ("agency-a", "agency-b", "acme-a", "acme-b")


@pytest.fixture
async def stores() -> AsyncIterator[dict[str, str]]:
    async with databases(PARTIES) as urls:
        yield urls


def _write(path: Path, stores: dict[str, str], ports: dict[str, int], hall: bool) -> str:
    """Four API connectors in pipe ``project`` (room lobby); with ``hall``, pipe
    ``extra`` joins room hall of each as well. The SHA-256 of the file written."""
    connectors = {name: {"party": name.split("-")[0], "type": "api",
                         "listen": f"127.0.0.1:{port}"} for name, port in ports.items()}
    pipes: dict[str, Any] = {
        "project": {"rooms": [{"connector": n, "room": "lobby"} for n in ports]}}
    if hall:
        pipes["extra"] = {"rooms": [{"connector": n, "room": "hall"} for n in ports]}
    cluster_config(path, stores, connectors, pipes)
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _wait_count(replica: Replica, text: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while replica.log().count(text) < count:
        assert time.monotonic() < deadline, f"{replica.name}: not {count}x {text!r}:\n" \
            + replica.log()
        await asyncio.sleep(0.1)


async def test_a_reload_sent_to_one_replica_reaches_the_other(
        tmp_path: Path, stores: dict[str, str]) -> None:
    """r1 and r2 run two connectors each. A pipe is added to the file and only r1 gets
    SIGHUP: r2 reloads too (its log says because of r1, with the file's SHA-256), and a
    message into the new room of a connector r2 runs reaches every connector's new room.
    Then a broken file and SIGHUP to r2 only: it is rejected there, r1 hears nothing,
    and both pipes keep working."""
    ports = {name: free_port() for name in NAMES}
    path = tmp_path / "roomlink.yaml"
    _write(path, stores, ports, hall=False)
    r1, r2 = Replica(path, "r1"), Replica(path, "r2")
    async with _running(r1, r2) as http:
        on_r2 = sorted(await r2.runs(http))
        on_r1 = sorted(await r1.runs(http))

        sha = _write(path, stores, ports, hall=True)
        assert r1.proc is not None
        r1.proc.send_signal(signal.SIGHUP)
        await _wait_count(r1, "reload done: ", 1)
        await _wait_count(r1, f"told the other replicas of its reload (config {sha[:12]})",
                          1)
        await _wait_count(r2, f"(replica r1 applied config {sha[:12]})", 1)
        await _wait_count(r2, "reload done: ", 1)
        assert "pipe extra added" in r2.log()
        assert "differs" not in r2.log()

        # into hall of a connector r2 runs: every other connector's hall receives it
        sender, *receivers = [*on_r2, *on_r1]
        streams = [await Stream(Room(http, ports[n], "hall")).__aenter__()
                   for n in receivers]
        hall = Room(http, ports[sender], "hall")
        first = await hall.post_until_accepted("into the new room", "alice", key="h1")
        for stream in streams:
            await stream.wait_for(1, timeout=60)
            assert [f["id"] for f in stream.frames] == [first]

        # a broken file, SIGHUP to r2 only: rejected there, nothing changes anywhere
        good = path.read_text()
        path.write_text(good + "\npipes: [unclosed\n")
        assert r2.proc is not None
        r2.proc.send_signal(signal.SIGHUP)
        await _wait_count(r2, "reload rejected", 1)
        await asyncio.sleep(8)  # more than CATCH_UP twice: r1 would have heard by now
        assert r1.log().count("reload: reading") == 1, r1.log()
        assert "reload rejected" not in r1.log()
        assert r2.log().count("reload done: ") == 1, r2.log()
        assert "told the other replicas" not in r2.log()
        second = await hall.post_until_accepted("still there", "alice", key="h2")
        for stream in streams:
            await stream.wait_for(2, timeout=60)
            assert [f["id"] for f in stream.frames] == [first, second]
            await stream.__aexit__(None, None, None)
        lobby = await Stream(Room(http, ports[on_r1[0]], "lobby")).__aenter__()
        said = await Room(http, ports[on_r2[0]], "lobby").post_until_accepted(
            "lobby too", "bob", key="l1")
        await lobby.wait_for(1, timeout=60)
        assert [f["id"] for f in lobby.frames] == [said]
        await lobby.__aexit__(None, None, None)
        assert sorted(await r1.runs(http)) == on_r1
        assert sorted(await r2.runs(http)) == on_r2


async def test_a_replica_whose_file_is_late_says_so_and_takes_it_later(
        tmp_path: Path, stores: dict[str, str]) -> None:
    """r2 reads its own copy of the file (a ConfigMap that reaches it later). r1's file
    gets a pipe and r1 a SIGHUP: r2 reloads what it reads, the same as before, and says
    its config differs from r1's. Once its copy is updated, a SIGHUP to r2 applies it
    there; r1 hears of it but runs that config already, and does nothing."""
    ports = {name: free_port() for name in NAMES}
    path, late = tmp_path / "roomlink.yaml", tmp_path / "late.yaml"
    _write(path, stores, ports, hall=False)
    _write(late, stores, ports, hall=False)
    r1, r2 = Replica(path, "r1"), Replica(late, "r2")
    async with _running(r1, r2) as http:
        on_r2 = sorted(await r2.runs(http))
        sha = _write(path, stores, ports, hall=True)
        old_sha = hashlib.sha256(late.read_bytes()).hexdigest()
        assert r1.proc is not None and r2.proc is not None
        r1.proc.send_signal(signal.SIGHUP)
        await _wait_count(r2, "reload done: nothing changed", 1)
        assert (f"this replica's config file ({old_sha[:12]}) differs from the one "
                f"replica r1 applied ({sha[:12]}); applying what it reads") in r2.log()
        hall = Room(http, ports[on_r2[0]], "hall")
        with pytest.raises(AssertionError):  # 404: not a room of r2's connectors yet
            await hall.post("too early", "alice")

        late.write_bytes(path.read_bytes())
        r2.proc.send_signal(signal.SIGHUP)
        await _wait_count(r2, f"told the other replicas of its reload (config {sha[:12]})",
                          1)
        stream = await Stream(Room(http, ports[on_r2[1]], "hall")).__aenter__()
        said = await hall.post_until_accepted("now", "alice", key="n1")
        await stream.wait_for(1, timeout=60)
        assert [f["id"] for f in stream.frames] == [said]
        await stream.__aexit__(None, None, None)
        await asyncio.sleep(8)  # more than CATCH_UP twice
        assert r1.log().count("reload: reading") == 1, r1.log()
        assert r2.log().count("reload: reading") == 2, r2.log()


@contextlib.asynccontextmanager
async def _running(r1: Replica, r2: Replica) -> AsyncIterator[aiohttp.ClientSession]:
    """Both replicas started and running two connectors each; stopped at the end."""
    try:
        async with aiohttp.ClientSession() as http:
            await r1.start()
            await r2.start()
            await wait_until(lambda: _two_each(http, r1, r2), "two connectors on each",
                             timeout=90)
            yield http
    finally:
        r1.cleanup()
        r2.cleanup()


async def _two_each(http: aiohttp.ClientSession, r1: Replica, r2: Replica) -> bool:
    found = await owners(http, [r1, r2])
    return len(found) == 4 and all(len(v) == 1 for v in found.values()) \
        and len(await r1.runs(http)) == len(await r2.runs(http)) == 2
