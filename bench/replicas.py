"""Replicas (``cluster.enabled``) on PostgreSQL: failover time after kill -9, and the
throughput of one pipe with its connectors on two replicas against one.

Three parties on fresh PostgreSQL databases at 127.0.0.1:5432, an API connector each,
one pipe. Prints figures; asserts nothing about time. Exit status 1 when a message went
missing, or came more often than once plus the one copy in flight at a kill.

failover: replicas r1 and r2; the sender's connector runs on r2, a receiver's on r1. A
poster sends a message every 20 ms into the sender's room while a WebSocket client
watches the receiver's room; r1 gets ``kill -9``. *Takeover* is the time from the kill
to the first message the receiver gets from r2 (what a user sees as the gap), *listening*
the time until r2 listens on the killed connector's port (after a SIGTERM: until r2 says
it runs the connector). r1 is started again and the
connectors spread before the next kill.

throughput: ``-n`` messages from 32 concurrent posters into the sender's room, until the
last one came out of the receiver's room: one process without ``cluster`` (the
baseline), every connector on one replica, then the sender on one replica and the
receiver on the other.

    .venv/bin/python bench/replicas.py       # 10 kills, 5 SIGTERMs, lease_seconds 10
    .venv/bin/python bench/replicas.py --skip throughput --kills 0 --terms 5
    .venv/bin/python bench/replicas.py --kills 3 --lease 5 -n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from replicakit import Replica, cluster_config, databases, owners  # noqa: E402
from rlkit import Daemon, Room, Stream, free_port  # noqa: E402

PARTIES = ("agency", "acme", "contractor")


async def wait(check, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await asyncio.sleep(0.05)


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def setup(tmp: Path, stores: dict[str, str], lease: float) -> tuple[Path, dict[str, int]]:
    ports = {f"{p}-api": free_port() for p in PARTIES}
    connectors = {n: {"party": n.split("-")[0], "type": "api", "listen": f"127.0.0.1:{port}"}
                  for n, port in ports.items()}
    pipes = {"project": {"rooms": [{"connector": n, "room": "lobby"} for n in ports]}}
    return cluster_config(tmp / "roomlink.yaml", stores, connectors, pipes, lease), ports


async def spread(http: aiohttp.ClientSession, group: list[Replica], count: int) -> None:
    async def ok() -> bool:
        found = await owners(http, group)
        return (len(found) == count and all(len(v) == 1 for v in found.values())
                and len({v[0] for v in found.values()}) == len(group))
    await wait(ok)


async def runs_on(http: aiohttp.ClientSession, replica: Replica, connector: str) -> bool:
    return connector in await replica.runs(http)


async def one_kill(http: aiohttp.ClientSession, victim: Replica, survivor: Replica,
                   ports: dict[str, int], streams: dict[str, Stream], sender: str,
                   receiver: str, k: int, term: bool = False) -> tuple[float, float, bool]:
    """A stream of messages into the sender's room, kill -9 (``term``: SIGTERM) of the
    receiver's replica: (takeover, listening again, nothing lost or doubled in any room).
    ``streams`` watch every room all along (a room nobody watches keeps its copies)."""
    start = {name: len(s.frames) for name, s in streams.items()}
    stream = streams[receiver]
    room = Room(http, ports[sender], "lobby")
    sent: list[str] = []
    stop = asyncio.Event()

    async def post() -> None:
        i = 0
        while not stop.is_set():
            sent.append(await room.post_until_accepted(f"k{k} {i}", "alice", key=f"k{k}-{i}"))
            i += 1
            await asyncio.sleep(0.02)
    poster = asyncio.create_task(post())
    await stream.wait_for(start[receiver] + 20)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGTERM if term else signal.SIGKILL)
    killed = time.monotonic()
    if not term:
        victim.proc.wait(10)  # its sockets close as it dies (a few milliseconds)
    if term:  # the port may still be the old owner's for a moment
        await wait(lambda: runs_on(http, survivor, receiver))
    else:
        await wait(lambda: listening(ports[receiver]))
    listened = time.monotonic() - killed
    # from here every frame is the new owner's (a SIGTERM'd one has finished its sends)
    await stream.wait_for(len(stream.frames) + 1, timeout=120)
    took = time.monotonic() - killed
    await asyncio.sleep(0.5)
    stop.set()
    await poster
    ok, repeated = True, 0
    for name, watching in streams.items():
        if name == sender:
            continue
        await watching.wait_for(start[name] + len(sent), timeout=120)
        await asyncio.sleep(0.5)
        ids = [str(f["id"]) for f in watching.frames[start[name]:]]
        unique = list(dict.fromkeys(ids))
        repeated += len(ids) - len(unique)
        if unique != sent or len(ids) - len(unique) > (0 if term else 1):
            ok = False
            print(f"  {name}: missing {[i for i in sent if i not in ids]}, not sent "
                  f"{[i for i in ids if i not in sent]}")
    victim.proc.wait(30)
    print(f"{'SIGTERM' if term else 'kill'} {k + 1}: takeover {took:.2f}s "
          f"(listening after {listened:.2f}s), {len(sent)} messages, {repeated} repeated"
          + ("" if ok else ", MISSING, REORDERED OR DOUBLED"))
    return took, listened, ok


async def failover(tmp: Path, kills: int, lease: float, term: bool = False) -> bool:
    takeovers: list[float] = []
    listens: list[float] = []
    good = True
    async with databases(PARTIES) as stores, aiohttp.ClientSession() as http:
        config, ports = setup(tmp, stores, lease)
        r1, r2 = Replica(config, "r1"), Replica(config, "r2")
        try:
            await r1.start()
            await r2.start()
            await spread(http, [r1, r2], len(ports))
            streams = {name: await Stream(Room(http, port, "lobby")).__aenter__()
                       for name, port in ports.items()}
            for k in range(kills):
                await spread(http, [r1, r2], len(ports))
                sender = (await r2.runs(http))[0]
                receiver = (await r1.runs(http))[0]
                took, listened, ok = await one_kill(http, r1, r2, ports, streams, sender,
                                                    receiver, k, term)
                takeovers.append(took)
                listens.append(listened)
                good = good and ok
                await r1.start()
            for watching in streams.values():
                await watching.__aexit__(None, None, None)
        finally:
            r1.cleanup()
            r2.cleanup()
    if not takeovers:
        return good
    what = "SIGTERM hand-overs" if term else "kills"
    print(f"failover, lease_seconds {lease:g}, {kills} {what}: takeover median "
          f"{statistics.median(takeovers):.2f}s, worst {max(takeovers):.2f}s; listening "
          f"median {statistics.median(listens):.2f}s, worst {max(listens):.2f}s")
    return good


async def throughput(tmp: Path, n: int, split: bool | None) -> tuple[float, bool]:
    """``split``: None for one process without ``cluster`` (the baseline)."""
    async with databases(PARTIES) as stores, aiohttp.ClientSession() as http:
        config, ports = setup(tmp, stores, 10.0)
        names = ["r1", "r2"] if split else ["r1"]
        group = [Replica(config, name) for name in names]
        if split is None:
            text = config.read_text().replace("enabled: true", "enabled: false")
            config.write_text(text)
            group = [Daemon(config, list(ports.values()), {"ADMIN_PORT": str(free_port())})]
        try:
            for replica in group:
                await replica.start()
            if isinstance(group[0], Replica):
                await spread(http, group, len(ports))  # type: ignore[arg-type]
            if split:
                sender = (await group[1].runs(http))[0]
                receiver = (await group[0].runs(http))[0]
            else:
                sender, receiver = list(ports)[:2]
            stream = await Stream(Room(http, ports[receiver], "lobby")).__aenter__()
            room = Room(http, ports[sender], "lobby")
            queue = list(range(n))
            sent: list[str] = []

            async def poster() -> None:
                while queue:
                    i = queue.pop()
                    sent.append(await room.post_until_accepted(f"m {i}", "a", key=f"m{i}"))
            started = time.monotonic()
            await asyncio.gather(*(poster() for _ in range(32)))
            await stream.wait_for(n, timeout=600)
            elapsed = time.monotonic() - started
            ok = sorted(str(f["id"]) for f in stream.frames) == sorted(sent)
            await stream.__aexit__(None, None, None)
            return n / elapsed, ok
        finally:
            for replica in group:
                replica.cleanup()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease", type=float, default=10.0)
    ap.add_argument("--terms", type=int, default=5)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--skip", choices=["failover", "throughput"])
    args = ap.parse_args()
    good = True
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip != "throughput":
            for split in (None, False, True):
                folder = Path(tmp) / f"throughput-{split}"
                folder.mkdir()
                rate, ok = await throughput(folder, args.n, split)
                good = good and ok
                where = ("sender and receiver on two replicas" if split else
                         "one replica" if split is False else "one process, no cluster")
                print(f"throughput, one pipe, {where}: {rate:.0f} msg/s "
                      f"({args.n} messages, 32 posters){'' if ok else ' MISSING/DOUBLED'}")
        if args.skip != "failover":
            folder = Path(tmp) / "failover"
            folder.mkdir()
            good = await failover(folder, args.kills, args.lease) and good
            folder = Path(tmp) / "handover"
            folder.mkdir()
            good = await failover(folder, args.terms, args.lease, term=True) and good
    return 0 if good else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
