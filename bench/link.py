"""The extra hop a federation link adds: API room to API room latency, one instance
against two instances joined by a link (both on loopback, SQLite stores).

Three paths, each measured one message at a time (post, then wait for the frame in the
other room): ``local`` (one roomlink, two parties: the baseline), ``guest->host`` (said on
the connecting side: held there, sent up, placed and recorded by the host, delivered to
its room) and ``host->guest`` (placed by the host, sent down, recorded by the guest,
delivered to its room). Prints median and p99 per path in milliseconds; asserts nothing
about time.

    .venv/bin/python bench/link.py            # 300 samples per path after 50 warm-up
    .venv/bin/python bench/link.py -n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rlkit import free_port, wait_port
from roomlink.record.sign import instance_id, keygen


def api(party: str, port: int) -> dict[str, Any]:
    return {"party": party, "type": "api", "listen": f"127.0.0.1:{port}"}


def configs(folder: Path) -> dict[str, tuple[Path, list[int], dict[str, int]]]:
    """name -> (config file, ports to wait for, party -> API port)."""
    out = {}
    a, b = free_port(), free_port()
    local = {"parties": {p: {"store": f"sqlite:///local-{p}.db"} for p in ("agency", "acme")},
             "connectors": {"agency-api": api("agency", a), "acme-api": api("acme", b)},
             "pipes": {"project": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                             {"connector": "acme-api", "room": "lobby"}]}}}
    out["local"] = (folder / "local.yaml", [a, b], {"agency": a, "acme": b})
    (folder / "local.yaml").write_text(yaml.safe_dump(local))
    hkey, gkey = keygen()[0], keygen()[0]
    h, g, link = free_port(), free_port(), free_port()
    host = {"instance": {"key": hkey},
            "parties": {"agency": {"store": "sqlite:///host.db"}},
            "connectors": {"agency-api": api("agency", h),
                           "to-acme": {"party": "agency", "type": "link",
                                       "listen": f"127.0.0.1:{link}",
                                       "peer_key": instance_id(gkey),
                                       "peer_parties": ["acme"]}},
            "pipes": {"project": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                            {"connector": "to-acme", "room": "project"}]}}}
    guest = {"instance": {"key": gkey},
             "parties": {"acme": {"store": "sqlite:///guest.db"}},
             "connectors": {"acme-api": api("acme", g),
                            "to-agency": {"party": "acme", "type": "link",
                                          "url": f"ws://127.0.0.1:{link}",
                                          "peer_key": instance_id(hkey)}},
             "pipes": {"project": {"rooms": [{"connector": "acme-api", "room": "lobby"},
                                             {"connector": "to-agency", "room": "project"}]}}}
    (folder / "host.yaml").write_text(yaml.safe_dump(host))
    (folder / "guest.yaml").write_text(yaml.safe_dump(guest))
    out["host"] = (folder / "host.yaml", [h, link], {"agency": h})
    out["guest"] = (folder / "guest.yaml", [g], {"acme": g})
    return out


async def start(config: Path, ports: list[int]) -> subprocess.Popen[bytes]:
    log = config.with_suffix(".log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "roomlink", "run", "-c", str(config)],
                            stdout=log, stderr=log)
    for port in ports:
        await wait_port(port, timeout=60, proc=proc)
    return proc


async def hop(http: aiohttp.ClientSession, src: int, dst: int, n: int, warm: int,
              tag: str) -> list[float]:
    """Post into room ``src``, time until the frame comes out of room ``dst``."""
    samples = []
    async with http.ws_connect(f"http://127.0.0.1:{dst}/v1/rooms/lobby/stream") as ws:
        for i in range(warm + n):
            started = time.perf_counter()
            async with http.post(f"http://127.0.0.1:{src}/v1/rooms/lobby/messages",
                                 json={"text": f"{tag} {i}", "author": "bench"}) as resp:
                assert resp.status == 202, await resp.text()
            while True:
                frame = json.loads((await ws.receive(timeout=60)).data)
                if frame["text"] == f"{tag} {i}":
                    break
            if i >= warm:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


def line(name: str, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"{name:<12} median {statistics.median(samples):6.2f} ms   p99 {q[98]:6.2f} ms"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="samples per path")
    parser.add_argument("--warm", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = configs(Path(tmp))
        procs = []
        results: dict[str, list[float]] = {}
        try:
            async with aiohttp.ClientSession() as http:
                proc = await start(*found["local"][:2])
                procs.append(proc)
                ports = found["local"][2]
                results["local"] = await hop(http, ports["agency"], ports["acme"], args.n,
                                             args.warm, "local")
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                for name in ("host", "guest"):
                    procs.append(await start(*found[name][:2]))
                h, g = found["host"][2]["agency"], found["guest"][2]["acme"]
                results["guest->host"] = await hop(http, g, h, args.n, args.warm, "up")
                results["host->guest"] = await hop(http, h, g, args.n, args.warm, "down")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    print(f"API room to API room, {args.n} samples each, one at a time "
          f"({os.cpu_count()} cores):")
    for name, samples in results.items():
        print(line(name, samples))
    base = statistics.median(results["local"])
    for name in ("guest->host", "host->guest"):
        print(f"{name}: the link adds {statistics.median(results[name]) - base:.2f} ms "
              "(median)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
