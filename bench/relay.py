"""Relay benchmark: post into one API room, read the other party's stream.

Starts the real ``roomlink run`` process with two parties (agency, acme), each with its
own durable store (SQLite in WAL mode by default, or PostgreSQL), and one pipe linking
``agency-api/lobby`` to ``acme-api/lobby``. A WebSocket client reads acme's room; the
poster writes into agency's room over HTTP. Then:

1. latency: one message at a time (the next is posted only once the previous one has
   come out of the stream); hop latency = POST sent -> frame received;
2. throughput: ``-n`` messages from ``--concurrency`` keep-alive posters; sustained rate =
   ``n`` / (first POST sent -> last frame received); every id must arrive exactly once.

It prints figures; it asserts nothing about time. Run from the repository root::

    .venv/bin/python bench/relay.py [-n 5000] [--concurrency 32] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
PARTIES = ("agency", "acme")
RESULT: dict[str, object] = {}  # the figures, for --json (bench/compare.py)


# -- helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"roomlink exited with {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` (all its threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK  # fields 14, 15 of stat(5)


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    return sum(proc_times(pid))


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[k]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- stores --------------------------------------------------------------------------


@dataclass
class Stores:
    kind: str
    urls: dict[str, str]
    admin_url: str = ""
    dbnames: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @classmethod
    async def create(cls, kind: str, workdir: Path, pg_url: str) -> Stores:
        if kind == "sqlite":
            paths = {p: workdir / f"{p}.db" for p in PARTIES}
            return cls(kind, {p: f"sqlite:///{path}" for p, path in paths.items()}, paths=paths)
        import asyncpg  # a dependency of roomlink

        tag = uuid.uuid4().hex[:8]
        dbnames = {p: f"roomlink_bench_{tag}_{p}" for p in PARTIES}
        conn = await asyncpg.connect(pg_url)
        try:
            for name in dbnames.values():
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        base = pg_url.rsplit("/", 1)[0]
        return cls(kind, {p: f"{base}/{n}" for p, n in dbnames.items()}, pg_url, dbnames)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Per party: messages stored, outbox rows by state."""
        out: dict[str, dict[str, int]] = {}
        q_msg = "SELECT count(*) FROM messages"
        q_box = "SELECT state, count(*) FROM outbox GROUP BY state"
        if self.kind == "sqlite":
            for party, path in self.paths.items():
                with contextlib.closing(sqlite3.connect(path)) as db:
                    c = {"messages": db.execute(q_msg).fetchone()[0]}
                    c |= {f"outbox {s}": n for s, n in db.execute(q_box)}
                out[party] = c
            return out
        import asyncpg

        for party, url in self.urls.items():
            conn = await asyncpg.connect(url)
            try:
                c = {"messages": await conn.fetchval(q_msg)}
                c |= {f"outbox {r[0]}": r[1] for r in await conn.fetch(q_box)}
            finally:
                await conn.close()
            out[party] = c
        return out

    async def drop(self) -> None:
        if self.kind != "postgresql":
            return
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.dbnames.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- the stream reader ---------------------------------------------------------------


class StreamReader:
    """Reads acme's room; stamps each frame with its arrival time, keyed by text."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.arrived: dict[str, float] = {}  # text -> perf_counter at arrival
        self.ids: Counter[str] = Counter()
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.connected = asyncio.Event()
        self.count_target = 0
        self.reached = asyncio.Event()
        self.last_arrival = 0.0
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with self.session.ws_connect(self.url, max_msg_size=0) as ws:
            self.connected.set()
            async for msg in ws:
                now = time.perf_counter()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    self.errors.append(f"unexpected frame type {msg.type}")
                    continue
                keyed = self.key(json.loads(msg.data))
                if keyed is None:
                    continue
                text, frame_id = keyed
                self.ids[frame_id] += 1
                self.arrived.setdefault(text, now)
                self.last_arrival = now
                waiter = self.waiters.pop(text, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now)
                if self.count_target and len(self.ids) >= self.count_target:
                    self.reached.set()
        self.errors.append("the stream closed")

    def key(self, frame: dict[str, Any]) -> tuple[str, str] | None:
        """(text, id) of a frame; None for a frame that is not a message."""
        return str(frame["text"]), str(frame["id"])

    def expect(self, text: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if text in self.arrived:
            fut.set_result(self.arrived[text])
        else:
            self.waiters[text] = fut
        return fut


# -- phases --------------------------------------------------------------------------


class RawPoster:
    """A lean HTTP/1.1 keep-alive client for one connection, so the posting side costs
    the shared CPUs as little as possible (aiohttp's client costs about 0.4 ms a POST
    here). ``--client aiohttp`` uses aiohttp instead."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.head = (f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, text: str) -> str:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = json.dumps(self.body(text)).encode()
        self.writer.write(f"{self.head}{len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *headers = head.decode("latin-1").split("\r\n")
        length = next(int(h.split(":", 1)[1]) for h in headers
                      if h.lower().startswith("content-length:"))
        answer = json.loads(await self.reader.readexactly(length))
        if status_line.split()[1] != self.status:
            raise RuntimeError(f"POST answered {status_line}: {answer}")
        return self.answer_id(answer, text)

    # what roomlink's API takes and answers (bench/matterbridge.py overrides these)
    status = "202"

    def body(self, text: str) -> dict[str, Any]:
        return {"text": text, "author": "bench"}

    def answer_id(self, answer: dict[str, Any], text: str) -> str:
        return str(answer["id"])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


class AiohttpPoster:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def post(self, text: str) -> str:
        async with self.session.post(self.url, json={"text": text, "author": "bench"}) as resp:
            body = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"POST answered {resp.status}: {body}")
            return str(body["id"])

    async def close(self) -> None:
        pass


Poster = RawPoster | AiohttpPoster


@dataclass
class LatencyResult:
    hop: list[float]
    ack: list[float]
    wall: float
    daemon_cpu: float


async def latency_phase(
    poster: Poster, reader: StreamReader, count: int, warmup: int, pid: int
) -> LatencyResult:
    hop: list[float] = []
    ack: list[float] = []
    cpu0, wall0 = proc_cpu(pid), time.perf_counter()
    for i in range(warmup + count):
        text = f"lat {i}"
        fut = reader.expect(text)
        t0 = time.perf_counter()
        await poster.post(text)
        t1 = time.perf_counter()
        arrived = await asyncio.wait_for(fut, 30)
        if i >= warmup:
            hop.append(arrived - t0)
            ack.append(t1 - t0)
        if i + 1 == warmup:
            cpu0, wall0 = proc_cpu(pid), time.perf_counter()
    return LatencyResult(hop, ack, time.perf_counter() - wall0, proc_cpu(pid) - cpu0)


@dataclass
class ThroughputResult:
    n: int
    posted_ids: list[str]
    wall: float
    post_wall: float
    daemon_cpu: float
    client_cpu: float
    received: int
    duplicates: int
    missing: int
    foreign: int


async def throughput_phase(
    url: str, client: str, reader: StreamReader, n: int, concurrency: int, pid: int,
    timeout: float, raw_poster: type[RawPoster] = RawPoster,
) -> ThroughputResult:
    posted: list[str] = []
    next_i = 0
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    posters: list[Poster] = [
        raw_poster(url) if client == "raw" else AiohttpPoster(session, url)
        for _ in range(concurrency)
    ]

    async def run_poster(poster: Poster) -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            posted.append(await poster.post(f"tp {i}"))

    try:
        # open the keep-alive connections first, so the timed part does not pay for them
        await asyncio.gather(*(p.post(f"open {k}") for k, p in enumerate(posters)))
        await asyncio.sleep(0.5)
        before = set(reader.ids)
        reader.count_target = len(before) + n
        reader.reached.clear()
        cpu0, ccpu0 = proc_cpu(pid), self_cpu()
        t0 = time.perf_counter()
        await asyncio.gather(*(run_poster(p) for p in posters))
        t_posted = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.reached.wait(), timeout)
        t_end = reader.last_arrival if reader.reached.is_set() else time.perf_counter()
        cpu1, ccpu1 = proc_cpu(pid), self_cpu()
        await asyncio.sleep(0.5)  # a late duplicate would show up here
    finally:
        for p in posters:
            await p.close()
        await session.close()

    new = {i: c for i, c in reader.ids.items() if i not in before}
    posted_set = set(posted)
    return ThroughputResult(
        n=n,
        posted_ids=posted,
        wall=t_end - t0,
        post_wall=t_posted - t0,
        daemon_cpu=cpu1 - cpu0,
        client_cpu=ccpu1 - ccpu0,
        received=sum(1 for i in posted_set if i in new),
        duplicates=sum(c - 1 for c in new.values() if c > 1),
        missing=len(posted_set - new.keys()),
        foreign=len(new.keys() - posted_set),
    )


# -- main ----------------------------------------------------------------------------


def write_config(
    workdir: Path, urls: dict[str, str], ports: dict[str, int], options: list[str]
) -> Path:
    extra = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options)}
    config = {
        "parties": {p: {"store": urls[p], **extra} for p in PARTIES},
        "connectors": {
            f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{ports[p]}"}
            for p in PARTIES
        },
        "pipes": {
            "bench": {
                "rooms": [{"connector": f"{p}-api", "room": "lobby"} for p in PARTIES],
            }
        },
    }
    path = workdir / "roomlink.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_file(src: Path, dst: str) -> None:
    if src.exists():
        Path(dst).write_bytes(src.read_bytes())


def print_machine(args: argparse.Namespace) -> None:
    import aiohttp as _aiohttp
    import sqlalchemy

    print("== machine")
    print(f"  cpus (nproc)      {os.cpu_count()}  (affinity: {len(os.sched_getaffinity(0))})")
    print(f"  python            {platform.python_version()} ({platform.python_implementation()})")
    print(f"  platform          {platform.platform()}")
    print(f"  sqlite            {sqlite3.sqlite_version}")
    print(f"  aiohttp / SA      {_aiohttp.__version__} / {sqlalchemy.__version__}")
    print(f"  store             {args.store}  (SQLite: journal_mode=WAL, synchronous=NORMAL)"
          if args.store == "sqlite" else f"  store             {args.store}")
    print(f"  posting client    {args.client}")
    print(f"  n / concurrency   {args.n} / {args.concurrency}; latency samples {args.latency}"
          f" after {args.warmup} warm-up")


async def run(args: argparse.Namespace) -> int:
    print_machine(args)
    with tempfile.TemporaryDirectory(prefix="roomlink-bench-") as tmp:
        workdir = Path(tmp)
        stores = await Stores.create(args.store, workdir, args.pg_url)
        try:
            return await run_with(args, workdir, stores)
        finally:
            await stores.drop()
            if args.keep_log:
                copy_file(workdir / "roomlink.log", args.keep_log)


async def run_with(args: argparse.Namespace, workdir: Path, stores: Stores) -> int:
    ports = {p: free_port() for p in PARTIES}
    config = write_config(workdir, stores.urls, ports, args.store_option)
    log_path = workdir / "roomlink.log"
    profile = ["-m", "cProfile", "-o", args.cprofile] if args.cprofile else []
    cmd = [sys.executable, *profile, "-m", "roomlink", "run", "-c", str(config),
           "--log-level", args.log_level]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=workdir)
    try:
        t_start = time.perf_counter()
        for port in ports.values():
            await wait_port(port, proc)
        RESULT.update(startup=time.perf_counter() - t_start,
                      rss_start=proc_status_kb(proc.pid, "VmRSS") / 1024)
        print(f"  daemon started    pid {proc.pid} in {time.perf_counter() - t_start:.2f} s;"
              f" RSS at start {proc_status_kb(proc.pid, 'VmRSS') / 1024:.1f} MiB")
        pid = proc.pid
        post_url = f"http://127.0.0.1:{ports['agency']}/v1/rooms/lobby/messages"
        stream_url = f"http://127.0.0.1:{ports['acme']}/v1/rooms/lobby/stream"
        async with aiohttp.ClientSession() as session:
            reader = StreamReader(session, stream_url)
            await reader.start()

            poster: Poster = (RawPoster(post_url) if args.client == "raw"
                              else AiohttpPoster(session, post_url))
            lat = await latency_phase(poster, reader, args.latency, args.warmup, pid)
            await poster.close()
            print(f"\n== latency: {len(lat.hop)} messages, one at a time")
            print(f"  hop   median {ms(statistics.median(lat.hop))}   p90 {ms(pct(lat.hop, .9))}"
                  f"   p99 {ms(pct(lat.hop, .99))}   max {ms(max(lat.hop))}")
            print(f"  202   median {ms(statistics.median(lat.ack))}   p90 {ms(pct(lat.ack, .9))}"
                  f"   p99 {ms(pct(lat.ack, .99))}   (POST sent -> durably stored answer)")
            RESULT.update(hop_median=statistics.median(lat.hop), hop_p99=pct(lat.hop, .99),
                          ack_median=statistics.median(lat.ack),
                          serial_cpu=lat.daemon_cpu / len(lat.hop))
            print(f"  rate  {len(lat.hop) / lat.wall:.0f} msg/s serial;"
                  f" daemon CPU {lat.daemon_cpu / len(lat.hop) * 1e3:.3f} ms/msg")

            tp = await throughput_phase(post_url, args.client, reader, args.n,
                                        args.concurrency, pid, args.timeout)
            ok = tp.received == tp.n and not tp.duplicates and not tp.missing and not tp.foreign
            RESULT.update(sustained=tp.n / tp.wall, accepted=tp.n / tp.post_wall,
                          tp_cpu=tp.daemon_cpu / tp.n, ok=ok)
            print(f"\n== throughput: {tp.n} messages, {args.concurrency} concurrent posters")
            print(f"  sustained         {tp.n / tp.wall:.0f} msg/s"
                  f"  (first POST -> last frame: {tp.wall:.2f} s)")
            print(f"  accepted          {tp.n / tp.post_wall:.0f} msg/s"
                  f"  (all 202s in {tp.post_wall:.2f} s)")
            print(f"  arrived once      {tp.received}/{tp.n}; duplicates {tp.duplicates},"
                  f" missing {tp.missing}, unexpected {tp.foreign}  -> {'OK' if ok else 'FAIL'}")
            print(f"  daemon CPU        {tp.daemon_cpu / tp.n * 1e3:.3f} ms/msg"
                  f"  ({tp.daemon_cpu / tp.wall * 100:.0f}% of one core)")
            print(f"  client CPU        {tp.client_cpu / tp.n * 1e3:.3f} ms/msg"
                  f"  ({tp.client_cpu / tp.wall * 100:.0f}% of one core; same machine)")
            await reader.stop()
            if reader.errors:
                print(f"  stream errors     {reader.errors[:3]}")

        hwm = proc_status_kb(pid, "VmHWM")
        utime, stime = proc_times(pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        RESULT.update(peak_rss=hwm / 1024)
        print("\n== daemon")
        print(f"  peak RSS (VmHWM)  {hwm / 1024:.1f} MiB")
        print(f"  CPU total         {utime + stime:.2f} s (user {utime:.2f}, system {stime:.2f});"
              f" exit code on SIGTERM {rc}")
        counts = await stores.counts()
        for party, c in counts.items():
            print(f"  store {party:<11} " + ", ".join(f"{k} {v}" for k, v in c.items()))
        return 0 if ok and rc == 0 else 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("-n", type=int, default=5000, help="messages in the throughput phase")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent posters (K)")
    p.add_argument("--latency", type=int, default=1000, help="latency samples")
    p.add_argument("--warmup", type=int, default=200, help="latency warm-up messages")
    p.add_argument("--client", choices=["raw", "aiohttp"], default="raw",
                   help="the posting client: a lean raw HTTP/1.1 one, or aiohttp's")
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-url", default=PG_DEFAULT, help="PostgreSQL admin URL (--store postgresql)")
    p.add_argument("--timeout", type=float, default=300, help="max wait for the last frame (s)")
    p.add_argument("--log-level", default="INFO", help="the daemon's --log-level")
    p.add_argument("--keep-log", metavar="PATH", help="copy the daemon's log here")
    p.add_argument("--cprofile", metavar="PATH",
                   help="run the daemon under cProfile, writing its stats here (slower)")
    p.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    p.add_argument("--store-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra party option for both stores (YAML value), e.g."
                        " async_delivery_marks=true")
    args = p.parse_args()
    if args.cprofile:
        args.cprofile = os.path.abspath(args.cprofile)  # the daemon runs in a temp dir
    rc = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(RESULT))
    return rc


if __name__ == "__main__":
    sys.exit(main())
