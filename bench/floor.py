"""Floors for bench/relay.py on this machine: the same hop without roomlink's logic.

1. transport: a bare aiohttp server, in its own process, that answers ``POST`` with 202
   and forwards the text to a WebSocket client (no stores, no router, no delivery);
   timed exactly like relay.py (serial hop latency, then ``-n`` from K posters);
2. store: roomlink's own Store layer, in this process, for what one relayed message
   costs there: ``record`` into two SQLite WAL stores, then ``mark_delivered`` in the
   destination's, one message at a time, and then in batches of ``--batch``.

It prints figures; it asserts nothing. ``.venv/bin/python bench/floor.py [-n 5000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from relay import RawPoster, free_port, ms, pct, proc_cpu, proc_status_kb, wait_port

SERVER = r"""
import json, sys
from aiohttp import web
if sys.argv[2:] == ["uvloop"]:  # as roomlink runs (roomlink.cli.main)
    import uvloop
    uvloop.install()
clients = set()
async def post(request):
    body = await request.json()
    data = json.dumps({"id": body["text"], "text": body["text"]})  # roomlink: more fields
    for ws in list(clients):
        await ws.send_str(data)
    return web.json_response({"id": body["text"]}, status=202)
async def stream(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    clients.add(ws)
    async for _ in ws:
        pass
    clients.discard(ws)
    return ws
app = web.Application()
app.router.add_post("/m", post)
app.router.add_get("/s", stream)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


async def transport(n: int, serial: int, concurrency: int, loop: str) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), loop])
    try:
        await wait_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        arrived: dict[str, float] = {}
        waiters: dict[str, asyncio.Future[float]] = {}
        async with aiohttp.ClientSession() as session, session.ws_connect(base + "/s") as ws:

            async def read() -> None:
                async for msg in ws:
                    now = time.perf_counter()
                    text = json.loads(msg.data)["text"]
                    arrived[text] = now
                    fut = waiters.pop(text, None)
                    if fut is not None:
                        fut.set_result(now)

            reader = asyncio.create_task(read())
            hops: list[float] = []
            poster = RawPoster(base + "/m")
            cpu0, t0 = proc_cpu(proc.pid), time.perf_counter()
            for i in range(serial):
                text = f"lat {i}"
                fut = waiters[text] = asyncio.get_running_loop().create_future()
                start = time.perf_counter()
                await poster.post(text)
                hops.append(await fut - start)
            serial_cpu = (proc_cpu(proc.pid) - cpu0) / serial
            await poster.close()
            print(f"== transport floor (bare aiohttp server POST -> WebSocket, {loop} loop,"
                  f" {serial} serial)")
            print(f"  hop   median {ms(statistics.median(hops))}   p90 {ms(pct(hops, .9))}"
                  f"   p99 {ms(pct(hops, .99))};  server CPU {serial_cpu * 1e3:.3f} ms/msg")
            print(f"  rate  {serial / (time.perf_counter() - t0):.0f} msg/s serial")

            posters = [RawPoster(base + "/m") for _ in range(concurrency)]
            next_i = 0
            last = asyncio.get_running_loop().create_future()
            waiters[f"tp {n - 1}"] = last  # one server, in order: the last text comes last

            async def run_poster(p: RawPoster) -> None:
                nonlocal next_i
                while next_i < n:
                    text = f"tp {next_i}"
                    next_i += 1
                    await p.post(text)

            await asyncio.gather(*(p.post("open") for p in posters))
            cpu0, t0, ccpu0 = proc_cpu(proc.pid), time.perf_counter(), time.process_time()
            await asyncio.gather(*(run_poster(p) for p in posters))
            wall = await last - t0
            cpu, ccpu = proc_cpu(proc.pid) - cpu0, time.process_time() - ccpu0
            peak_rss = proc_status_kb(proc.pid, "VmHWM") / 1024
            for p in posters:
                await p.close()
            print(f"  {n} from {concurrency} posters: {n / wall:.0f} msg/s;"
                  f" server peak RSS {peak_rss:.1f} MiB;"
                  f" server CPU {cpu / n * 1e3:.3f} ms/msg ({cpu / wall * 100:.0f}% of one core),"
                  f" client CPU {ccpu / n * 1e3:.3f} ms/msg")
            reader.cancel()
            return {"hop_median": statistics.median(hops), "hop_p99": pct(hops, .99),
                    "sustained": n / wall, "serial_cpu": serial_cpu, "tp_cpu": cpu / n,
                    "client_cpu": ccpu / n, "peak_rss": peak_rss}
    finally:
        proc.terminate()
        proc.wait(10)


async def store(serial: int, batch: int, rounds: int) -> None:
    from roomlink.config import load_config
    from roomlink.message.model import Author, Kind, Message, RoomRef, new_message_id, utcnow
    from roomlink.relay.topology import build_topology
    from roomlink.store import NewMessage, open_store

    with tempfile.TemporaryDirectory(prefix="roomlink-floor-") as tmp:
        cfg_path = Path(tmp) / "c.yaml"
        cfg_path.write_text(json.dumps({
            "parties": {p: {"store": f"sqlite:///{tmp}/{p}.db"} for p in ("agency", "acme")},
            "connectors": {f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{i}"}
                           for i, p in ((1, "agency"), (2, "acme"))},
            "pipes": {"p": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                      {"connector": "acme-api", "room": "lobby"}]}},
        }))
        topo = build_topology(load_config(str(cfg_path)))
        pipe = topo.pipes["p"]
        origin = RoomRef("agency-api", "lobby")
        stores = {p: await open_store(p, f"sqlite:///{tmp}/{p}.db") for p in pipe.parties}
        counter = 0

        def message() -> Message:
            nonlocal counter
            counter += 1
            return Message(
                id=new_message_id("p", origin, None), pipe="p", kind=Kind.MESSAGE,
                origin_connector="agency-api", origin_room="lobby", origin_native_id=None,
                author=Author(name="bench", id=None, party="agency", platform="api"),
                text=f"floor {counter}", attachments=(), reply_to=None, target=None,
                ts=utcnow(),
            )

        async def one_batch(size: int) -> tuple[float, float]:
            msgs = [message() for _ in range(size)]
            t0 = time.perf_counter()
            results = await asyncio.gather(*(
                stores[p].append([NewMessage(m, pipe.destinations(origin, p)) for m in msgs])
                for p in pipe.parties))
            t1 = time.perf_counter()
            rows = [r for per in results for rs in per for r in rs]
            await asyncio.gather(*(stores["acme"].mark_delivered(r.id, [r.message.id])
                                   for r in rows))
            return t1 - t0, time.perf_counter() - t1

        for _ in range(50):
            await one_batch(1)
        rec, mark = [], []
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(serial):
            a, b = await one_batch(1)
            rec.append(a)
            mark.append(b)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"\n== store floor (roomlink Store, 2 SQLite WAL stores, {serial} serial)")
        print(f"  record in both   median {ms(statistics.median(rec))}   p99 {ms(pct(rec, .99))}")
        print(f"  mark_delivered   median {ms(statistics.median(mark))}   p99 {ms(pct(mark, .99))}")
        print(f"  {serial / wall:.0f} msg/s serial; CPU {cpu / serial * 1e3:.3f} ms/msg")
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await one_batch(batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  batches of {batch} (record, then {batch} mark_delivered queued at once):"
              f" {rounds * batch / wall:.0f} msg/s; CPU {cpu / rounds / batch * 1e3:.3f} ms/msg")
        for s in stores.values():
            await s.close()


async def run(args: argparse.Namespace) -> dict[str, float]:
    figures = {} if args.store_only else await transport(args.n, args.serial, args.concurrency,
                                                         "uvloop" if args.uvloop else "asyncio")
    if not args.transport_only:
        await store(args.serial, args.batch, max(1, args.n // args.batch))
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description="floors for bench/relay.py")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--serial", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--transport-only", action="store_true", help="skip the store floor")
    p.add_argument("--store-only", action="store_true", help="skip the transport floor")
    p.add_argument("--uvloop", action="store_true",
                   help="run the bare server on uvloop, as roomlink runs (default: asyncio's loop)")
    p.add_argument("--json", metavar="PATH", help="also write the transport figures as JSON")
    args = p.parse_args()
    figures = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
