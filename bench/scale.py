"""Scale benchmark: one daemon, many pipes (1,000 x 2 API rooms by default).

Starts the real ``roomlink run`` with two parties (agency, acme; SQLite stores by
default), two API connectors, and ``--pipes`` pipes, pipe i joining ``agency-api/r{i}``
to ``acme-api/r{i}``. Then it reports:

1. start-up: time from spawning the process until both API ports answer, and RSS then
   (once creating the stores, then again as a restart: the figure that counts);
2. idle: CPU used over ``--idle`` seconds with nothing to do (as % of one core);
3. hop, unloaded: ``--samples`` messages, one at a time, each into a random pipe
   (POST into agency's room -> frame out of acme's room);
4. hop, loaded: the same while ``--busy`` other pipes carry ``--rate`` msg/s between
   them (each busy room has a reader, so every message is really delivered), the load
   coming from a separate process so that it does not slow the probe's own client;
5. for reference, the unloaded hop of a daemon with a single pipe, started afterwards.

It prints figures and asserts nothing about time; exit status 1 only if a message went
missing. Run from the repository root::

    .venv/bin/python bench/scale.py [--pipes 1000] [--busy 100] [--rate 200] [--idle 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from relay import (
    PARTIES,
    PG_DEFAULT,
    RawPoster,
    Stores,
    StreamReader,
    free_port,
    ms,
    pct,
    proc_cpu,
    proc_status_kb,
    wait_port,
)


def write_config(workdir: Path, urls: dict[str, str], ports: dict[str, int], pipes: int) -> Path:
    config = {
        "parties": {p: {"store": urls[p]} for p in PARTIES},
        "connectors": {
            f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{ports[p]}"}
            for p in PARTIES
        },
        "pipes": {
            f"p{i}": {"rooms": [{"connector": f"{p}-api", "room": f"r{i}"} for p in PARTIES]}
            for i in range(pipes)
        },
    }
    path = workdir / "roomlink.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Daemon:
    def __init__(self, workdir: Path, urls: dict[str, str], pipes: int) -> None:
        self.ports = {p: free_port() for p in PARTIES}
        self.config = write_config(workdir, urls, self.ports, pipes)
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> float:
        cmd = [sys.executable, "-m", "roomlink", "run", "-c", str(self.config),
               "--log-level", "WARNING"]
        with (self.workdir / "roomlink.log").open("ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=self.workdir)
        for port in self.ports.values():
            await wait_port(port, self.proc, timeout=120)
        return time.perf_counter() - t0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, party: str, room: str, what: str) -> str:
        return f"http://127.0.0.1:{self.ports[party]}/v1/rooms/{room}/{what}"

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def probe(
    daemon: Daemon, readers: dict[int, StreamReader], posters: dict[int, RawPoster],
    samples: int, tag: str,
) -> list[float]:
    """``samples`` hops, one at a time, each in a random one of the probe pipes."""
    hops = []
    rooms = list(readers)
    for k in range(samples):
        i = random.choice(rooms)
        text = f"{tag} {k}"
        fut = readers[i].expect(text)
        t0 = time.perf_counter()
        await posters[i].post(text)
        hops.append(await asyncio.wait_for(fut, 30) - t0)
    return hops


async def open_rooms(
    session: aiohttp.ClientSession, daemon: Daemon, rooms: list[int]
) -> tuple[dict[int, StreamReader], dict[int, RawPoster]]:
    readers = {i: StreamReader(session, daemon.url("acme", f"r{i}", "stream")) for i in rooms}
    await asyncio.gather(*(r.start() for r in readers.values()))
    posters = {i: RawPoster(daemon.url("agency", f"r{i}", "messages")) for i in rooms}
    await asyncio.gather(*(p.post(f"open r{i}") for i, p in posters.items()))
    return readers, posters


async def load(posters: dict[int, RawPoster], rate: float, stop: asyncio.Event) -> int:
    """Post into the busy pipes, round robin, at ``rate`` msg/s in all; returns the count."""
    sent = 0
    rooms = list(posters)
    per_room = rate / len(rooms)

    async def one(i: int) -> None:
        nonlocal sent
        interval = 1 / per_room
        nxt = time.perf_counter() + random.random() * interval
        k = 0
        while not stop.is_set():
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            await posters[i].post(f"load {i} {k}")
            sent += 1
            k += 1
            nxt += interval

    await asyncio.gather(*(one(i) for i in rooms))
    return sent


def load_process(
    ports: dict[str, int], rooms: list[int], rate: float, ready: Any, stop: Any, result: Any
) -> None:
    """The background traffic, in a child process: (sent, arrived) go to ``result``."""

    async def main() -> tuple[int, int]:
        base = {p: f"http://127.0.0.1:{port}/v1/rooms" for p, port in ports.items()}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            readers = {i: StreamReader(session, f"{base['acme']}/r{i}/stream") for i in rooms}
            await asyncio.gather(*(r.start() for r in readers.values()))
            posters = {i: RawPoster(f"{base['agency']}/r{i}/messages") for i in rooms}
            done = asyncio.Event()
            ready.set()
            task = asyncio.create_task(load(posters, rate, done))
            await asyncio.to_thread(stop.wait)
            done.set()
            sent = await task
            await asyncio.sleep(2)
            got = sum(sum(1 for t in r.arrived if t.startswith("load ")) for r in readers.values())
            for r in readers.values():
                await r.stop()
            for p in posters.values():
                await p.close()
            return sent, got

    result.put(asyncio.run(main()))


async def measure_many(args: argparse.Namespace, workdir: Path, stores: Stores) -> dict[str, float]:
    daemon = Daemon(workdir, stores.urls, args.pipes)
    out: dict[str, float] = {}
    try:
        out["first_start"] = await daemon.start()  # creates and migrates the stores
        out["rss_first"] = proc_status_kb(daemon.pid, "VmRSS") / 1024
        daemon.stop()
        out["startup"] = await daemon.start()
        out["rss_start"] = proc_status_kb(daemon.pid, "VmRSS") / 1024
        print(f"== {args.pipes} pipes x 2 API rooms ({args.store})")
        print(f"  first start       {out['first_start']:.2f} s (creating the stores);"
              f" RSS then {out['rss_first']:.1f} MiB")
        print(f"  start-up          {out['startup']:.2f} s (spawn -> both API ports answer);"
              f" RSS then {out['rss_start']:.1f} MiB")
        await asyncio.sleep(2)  # let start-up work (first store pages) settle
        cpu0, t0 = proc_cpu(daemon.pid), time.perf_counter()
        await asyncio.sleep(args.idle)
        out["idle_cpu"] = (proc_cpu(daemon.pid) - cpu0) / (time.perf_counter() - t0)
        print(f"  idle CPU          {out['idle_cpu'] * 100:.2f}% of one core"
              f" over {args.idle:.0f} s")

        rooms = list(range(args.pipes))
        random.shuffle(rooms)
        busy, probes = rooms[: args.busy], rooms[args.busy : args.busy + args.probe_rooms]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            readers, posters = await open_rooms(session, daemon, probes)
            idle_hops = await probe(daemon, readers, posters, args.samples, "idle")
            out["hop_idle"] = statistics.median(idle_hops)
            print(f"  hop, unloaded     median {ms(out['hop_idle'])}   p90"
                  f" {ms(pct(idle_hops, .9))}   p99 {ms(pct(idle_hops, .99))}"
                  f"   ({args.samples} in {len(probes)} random pipes)")

            # the load runs in a process of its own, so that its posters and readers do
            # not delay this loop's reading of the probe frames
            ctx = multiprocessing.get_context("spawn")
            ready, stop = ctx.Event(), ctx.Event()
            result = ctx.Queue()
            loader = ctx.Process(target=load_process, args=(
                daemon.ports, busy, args.rate, ready, stop, result))
            loader.start()
            await asyncio.to_thread(ready.wait, 120)
            cpu0, t0 = proc_cpu(daemon.pid), time.perf_counter()
            await asyncio.sleep(1)
            loaded_hops = await probe(daemon, readers, posters, args.samples, "loaded")
            wall = time.perf_counter() - t0
            load_cpu = (proc_cpu(daemon.pid) - cpu0) / wall
            stop.set()
            sent, got = await asyncio.to_thread(result.get, True, 120)
            loader.join(30)
            out["hop_loaded"] = statistics.median(loaded_hops)
            out["load_rate"] = sent / wall
            print(f"  hop, loaded       median {ms(out['hop_loaded'])}   p90"
                  f" {ms(pct(loaded_hops, .9))}   p99 {ms(pct(loaded_hops, .99))}"
                  f"   while {len(busy)} pipes carried {sent / wall:.0f} msg/s"
                  f" (daemon {load_cpu * 100:.0f}% of one core)")
            missing = sent - got
            out["missing"] = missing
            print(f"  load delivered    {got}/{sent}"
                  + ("" if missing <= 0 else f"  ({missing} not (yet) arrived)"))
            for r in readers.values():
                await r.stop()
            for p in posters.values():
                await p.close()
        out["peak_rss"] = proc_status_kb(daemon.pid, "VmHWM") / 1024
        rc = daemon.stop()
        print(f"  peak RSS          {out['peak_rss']:.1f} MiB; exit code on SIGTERM {rc}")
        out["rc"] = rc
        return out
    finally:
        daemon.kill()


async def measure_single(args: argparse.Namespace, workdir: Path, stores: Stores) -> float:
    daemon = Daemon(workdir, stores.urls, 1)
    try:
        await daemon.start()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            readers, posters = await open_rooms(session, daemon, [0])
            hops = await probe(daemon, readers, posters, args.samples, "single")
            for r in readers.values():
                await r.stop()
            for p in posters.values():
                await p.close()
        daemon.stop()
        return statistics.median(hops)
    finally:
        daemon.kill()


async def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="roomlink-scale-") as tmp:
        many_dir, single_dir = Path(tmp) / "many", Path(tmp) / "single"
        many_dir.mkdir()
        single_dir.mkdir()
        stores = await Stores.create(args.store, many_dir, args.pg_url)
        try:
            out = await measure_many(args, many_dir, stores)
        finally:
            await stores.drop()
        stores = await Stores.create(args.store, single_dir, args.pg_url)
        try:
            out["hop_single"] = await measure_single(args, single_dir, stores)
        finally:
            await stores.drop()
    print(f"\n== reference: a daemon with 1 pipe, unloaded hop median {ms(out['hop_single'])}")
    print(f"  loaded hop in {args.pipes} pipes / single-pipe hop:"
          f" {out['hop_loaded'] / out['hop_single']:.2f}x;"
          f" unloaded: {out['hop_idle'] / out['hop_single']:.2f}x")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pipes", type=int, default=1000)
    p.add_argument("--busy", type=int, default=100, help="pipes carrying background traffic")
    p.add_argument("--rate", type=float, default=200, help="background msg/s over all busy pipes")
    p.add_argument("--probe-rooms", type=int, default=50, help="pipes the probes choose from")
    p.add_argument("--samples", type=int, default=300, help="probe messages per phase")
    p.add_argument("--idle", type=float, default=30, help="seconds of idle CPU measurement")
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT)
    p.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    args = p.parse_args()
    args.busy = min(args.busy, args.pipes - 1)
    args.probe_rooms = min(args.probe_rooms, args.pipes - args.busy)
    out = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(out))
    return 0 if out["missing"] <= 0 and out["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
