"""Several replicas of one config on the same PostgreSQL stores (``cluster.enabled``): each
connector runs on exactly one of them, they take over from one that dies or stops, and
what they record is one order in every party's store."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from irckit import Ngircd, UserFactory

from replicakit import Proxy, Replica, cli, cluster_config, databases, owners, wait_until
from rlkit import Room, Stream, export, free_port

PARTIES = ("agency", "acme", "contractor")
ENV = {"ADMIN_PORT": "1"}


@pytest.fixture
async def stores() -> AsyncIterator[dict[str, str]]:
    async with databases(PARTIES) as urls:
        yield urls


def _api_config(tmp_path: Path, stores: dict[str, str], per_party: int = 1
                ) -> tuple[Path, dict[str, int]]:
    """Per party ``per_party`` API connectors (``<party>-api<i>``), all in pipe
    ``project``'s room lobby... one room each: ``lobby<i>``."""
    ports = {f"{p}-api{i}": free_port() for p in PARTIES for i in range(per_party)}
    connectors = {name: {"party": name.split("-")[0], "type": "api",
                         "listen": f"127.0.0.1:{port}"} for name, port in ports.items()}
    pipes = {"project": {"rooms": [{"connector": name, "room": "lobby"} for name in ports]}}
    return cluster_config(tmp_path / "roomlink.yaml", stores, connectors, pipes), ports


@contextlib.asynccontextmanager
async def replicas(config: Path, names: list[str], env: dict[str, str] | None = None
                   ) -> AsyncIterator[list[Replica]]:
    started = [Replica(config, name, env) for name in names]
    try:
        for replica in started:
            await replica.start()
        yield started
    finally:
        for replica in started:
            replica.cleanup()


async def _spread(http: aiohttp.ClientSession, group: list[Replica], connectors: int,
                  each: int) -> dict[str, list[str]]:
    """Wait until every connector runs on one replica and each runs ``each``."""
    found: dict[str, list[str]] = {}

    async def spread() -> bool:
        nonlocal found
        found = await owners(http, group)
        counts = [len(await r.runs(http)) for r in group if r.proc and r.proc.poll() is None]
        return len(found) == connectors and all(len(v) == 1 for v in found.values()) \
            and all(c == each for c in counts)
    await wait_until(spread, f"{connectors} connectors, {each} on each replica")
    return found


async def test_connectors_spread_over_replicas_one_owner_each(
        tmp_path: Path, stores: dict[str, str], ngircd: Ngircd, irc_user: UserFactory) -> None:
    """Three replicas, six connectors (an API and an IRC account per party): two on each,
    one IRC connection per nick, every message delivered once."""
    ports = {f"{p}-api": free_port() for p in PARTIES}
    connectors: dict[str, dict[str, object]] = {
        name: {"party": name.split("-")[0], "type": "api", "listen": f"127.0.0.1:{port}"}
        for name, port in ports.items()}
    connectors.update({f"{p}-irc": {
        "party": p, "type": "irc", "server": "127.0.0.1", "port": ngircd.port,
        "nick": f"rl{p}", "line_interval": 0.01, "reconnect_initial": 0.2,
        "reconnect_max": 2.0} for p in PARTIES})
    pipes = {"project": {"rooms": [
        {"connector": name, "room": f"#{name.split('-')[0]}" if name.endswith("irc")
         else "lobby"} for name in connectors]}}
    config = cluster_config(tmp_path / "roomlink.yaml", stores, connectors, pipes)
    observer = await irc_user("watcher", *(f"#{p}" for p in PARTIES))
    async with replicas(config, ["r1", "r2", "r3"]) as group, aiohttp.ClientSession() as http:
        found = await _spread(http, group, 6, 2)
        for p in PARTIES:  # each bridge joined its channel
            await observer.wait_line(lambda ln, p=p: ln.command == "JOIN"
                                     and ln.nick == f"rl{p}", timeout=60)
        rooms = {name: Room(http, port, "lobby") for name, port in ports.items()}
        streams = {name: await Stream(room).__aenter__() for name, room in rooms.items()}
        sent = await rooms["agency-api"].post("hello", "alice")
        for name, stream in streams.items():
            if name != "agency-api":
                await stream.wait_for(1)
        for p in PARTIES:
            await observer.wait_texts(f"#{p}", 1, sender=f"rl{p}", timeout=60)
        observer.say("#acme", "hi from irc")
        for stream in streams.values():
            await stream.wait_for(2 if stream is not streams["agency-api"] else 1)
        await asyncio.sleep(1)
        for name, stream in streams.items():
            ids = [f["id"] for f in stream.frames]
            assert len(ids) == len(set(ids)) == (1 if name == "agency-api" else 2), name
            assert sent["id"] in ids or name == "agency-api"
            await stream.__aexit__(None, None, None)
        for p in PARTIES:
            texts = observer.texts(f"#{p}", sender=None)
            assert sum("hello" in t for t in texts) == 1, texts
        # one connection per IRC account: no bridge ever fell back to another nick
        joined = {ln.nick for ln in observer.lines if ln.command == "JOIN"}
        assert joined == {"watcher", *(f"rl{p}" for p in PARTIES)}, joined
        # a replica says which connectors it runs, and its status page shows it
        for replica in group:
            status = await replica.status(http)
            assert status["replica"]["id"] == replica.name
            mine = sorted(n for n, where in found.items() if where == [replica.name])
            assert sorted(status["replica"]["connectors"]) == mine
            async with http.get(f"http://127.0.0.1:{replica.admin_port}/") as resp:
                assert f"replica {replica.name} runs {', '.join(mine)}" in await resp.text()


async def test_kill_9_of_the_owner_of_a_busy_pipe(tmp_path: Path, stores: dict[str, str]
                                                  ) -> None:
    config, ports = _api_config(tmp_path, stores)
    async with replicas(config, ["r1", "r2"]) as group, aiohttp.ClientSession() as http:
        await wait_until(lambda: _all_run(http, group, 3), "every connector running")
        found = await owners(http, group)
        sender, *receivers = ports
        victim_name = found[receivers[0]][0]
        victim = next(r for r in group if r.name == victim_name)
        room = Room(http, ports[sender], "lobby")
        streams = [await Stream(Room(http, ports[n], "lobby")).__aenter__() for n in receivers]
        expected: list[str] = []
        total, kill_at = 200, 80
        for i in range(total):
            if i == kill_at:
                victim.kill()
            expected.append(await room.post_until_accepted(f"message {i}", "alice", key=f"k{i}"))
        for stream in streams:
            await stream.wait_for(total, timeout=120)
            await asyncio.sleep(0.5)
            ids = [str(f["id"]) for f in stream.frames]
            unique = list(dict.fromkeys(ids))
            assert unique == expected, "a message is missing or out of order"
            # the one copy in flight at the kill may come twice, nothing else
            assert len(ids) - len(unique) <= 1, "more than the copy in flight repeated"
            await stream.__aexit__(None, None, None)
        survivor = next(r for r in group if r is not victim)
        assert sorted(await survivor.runs(http)) == sorted(ports)
    for party in PARTIES:
        assert [r["id"] for r in export(config, party, env=ENV)] == expected


async def _all_run(http: aiohttp.ClientSession, group: list[Replica], count: int) -> bool:
    found = await owners(http, group)
    return len(found) == count and all(len(v) == 1 for v in found.values())


async def _spread_all(http: aiohttp.ClientSession, group: list[Replica], count: int) -> bool:
    """Every connector runs on one replica, and every replica runs some."""
    found = await owners(http, group)
    return await _all_run(http, group, count) and len(
        {where[0] for where in found.values()}) == len(group)


async def test_sigterm_hands_over_at_once_nothing_repeated(
        tmp_path: Path, stores: dict[str, str]) -> None:
    config, ports = _api_config(tmp_path, stores)
    json_logs = {"ROOMLINK_LOG_FORMAT": "json"}
    async with replicas(config, ["r1", "r2"], json_logs) as group, \
            aiohttp.ClientSession() as http:
        await wait_until(lambda: _spread_all(http, group, 3), "connectors spread")
        sender, *receivers = ports
        leaving, staying = group
        room = Room(http, ports[sender], "lobby")
        streams = [await Stream(Room(http, ports[n], "lobby")).__aenter__() for n in receivers]
        expected = [await room.post_until_accepted(f"before {i}", "alice", key=f"b{i}")
                    for i in range(20)]
        for stream in streams:
            await stream.wait_for(20)
        assert leaving.terminate() == 0, leaving.log()
        await wait_until(lambda: _runs_all(http, staying, ports), "the other runs them all",
                         timeout=LEASE_WAIT)
        expected += [await room.post_until_accepted(f"after {i}", "alice", key=f"a{i}")
                     for i in range(20)]
        for stream in streams:
            await stream.wait_for(40)
            await asyncio.sleep(0.5)
            assert [str(f["id"]) for f in stream.frames] == expected
            await stream.__aexit__(None, None, None)
        # gathered, each replica's JSON lines say whose they are
        lines = [json.loads(line) for line in leaving.log().splitlines()
                 if line.startswith("{")]
        handed = [ln for ln in lines if "hands connector" in ln["message"]
                  or "runs connector" in ln["message"]]
        assert handed and {ln.get("replica") for ln in handed} == {"r1"}


LEASE_WAIT = 60.0


async def _runs_all(http: aiohttp.ClientSession, replica: Replica, ports: dict[str, int]
                    ) -> bool:
    return sorted(await replica.runs(http)) == sorted(ports)


async def test_concurrent_posts_through_replicas_one_order(
        tmp_path: Path, stores: dict[str, str]) -> None:
    config, ports = _api_config(tmp_path, stores)
    async with replicas(config, ["r1", "r2"]) as group, aiohttp.ClientSession() as http:
        await wait_until(lambda: _spread_all(http, group, 3), "connectors spread")
        rooms = {name: Room(http, port, "lobby") for name, port in ports.items()}

        async def post_many(name: str) -> None:
            for i in range(60):
                await rooms[name].post_until_accepted(f"{name} {i}", name, key=f"{name}{i}")
        await asyncio.gather(*(post_many(name) for name in ports))
    digests = set()
    for party in PARTIES:
        cli("history", "verify", "-c", str(config), "--party", party)  # exit 0: intact
        digests.add(cli("history", "digest", "-c", str(config), "--party", party).strip())
    assert len(digests) == 1, digests
    orders = {tuple(r["id"] for r in export(config, party, env=ENV)) for party in PARTIES}
    assert len(orders) == 1 and len(next(iter(orders))) == 180


def _logged_at(replica: Replica, text: str) -> datetime:
    """When ``replica`` last logged a line holding ``text``."""
    for line in reversed(replica.log().splitlines()):
        if text in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"{replica.name} never logged {text!r}:\n{replica.log()}")


async def test_a_replica_cut_from_its_database_stops_before_another_takes_over(
        tmp_path: Path, stores: dict[str, str]) -> None:
    """r1 reaches PostgreSQL through a proxy. Mid-stream its server processes are ended
    (pg_terminate_backend): it connects again and keeps its connectors. Then the proxy
    is cut: r1 stops its connectors by itself before r2 runs them. Nothing is lost, and
    nothing doubled but a copy in flight."""
    proxy = Proxy()
    await proxy.start()
    via_env = {p: url.replace(":5432/", ":${PG_PORT}/") for p, url in stores.items()}
    config, ports = _api_config(tmp_path, via_env)
    r1 = Replica(config, "r1", {"PG_PORT": str(proxy.port)})
    r2 = Replica(config, "r2", {"PG_PORT": "5432"})
    try:
        async with aiohttp.ClientSession() as http:
            await r1.start()
            await wait_until(lambda: _runs_all(http, r1, ports), "r1 runs every connector")
            await r2.start()
            await wait_until(lambda: _spread_all(http, [r1, r2], 3), "connectors spread")
            on_r1 = await r1.runs(http)
            sender = (await r2.runs(http))[0]
            receivers = [n for n in ports if n != sender]
            room = Room(http, ports[sender], "lobby")
            streams = [await Stream(Room(http, ports[n], "lobby")).__aenter__()
                       for n in receivers]
            expected: list[str] = []
            for i in range(150):
                if i == 30:  # its connections end; it connects again and goes on
                    assert await proxy.terminate_backends() >= 3
                if i == 70:
                    assert await r1.runs(http) == on_r1, "r1 kept its connectors"
                    await proxy.cut()
                expected.append(await room.post_until_accepted(f"m {i}", "bob", key=f"m{i}"))
            for stream in streams:
                await stream.wait_for(len(expected), timeout=120)
                await asyncio.sleep(0.5)
                ids = [str(f["id"]) for f in stream.frames]
                unique = list(dict.fromkeys(ids))
                assert unique == expected, "a message is missing or out of order"
                assert len(ids) - len(unique) <= 2, "more than the copies in flight repeated"
                await stream.__aexit__(None, None, None)
            for name in on_r1:
                stopped = _logged_at(r1, f"lease of connector {name} in time; stopping it")
                taken = _logged_at(r2, f"replica r2 runs connector {name} ")
                assert stopped < taken, (name, stopped, taken)
    finally:
        r1.cleanup()
        r2.cleanup()
