"""Files benchmark: relay one large file (25 MiB by default) between two API rooms.

Starts the real ``roomlink run`` process with two parties (agency, acme), each with its
own SQLite store (files in a folder beside it), and one pipe linking
``agency-api/lobby`` to ``acme-api/lobby``. A client watches acme's room; another posts
the file into agency's room as ``multipart/form-data`` (streamed from disk), then the
watcher downloads it from the URL its frame names and checks its SHA-256. Prints:

- upload: POST sent -> 202 (the file durable, fsync'd, in both stores);
- relay: POST sent -> frame received in the other room;
- download: the frame's URL -> the last byte;
- the daemon's peak RSS (VmHWM) before the transfer (after a warm-up message) and after.

It prints figures and asserts only that the bytes arrived equal. Run from the repository
root::

    .venv/bin/python bench/files.py [--mib 25] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rlkit import Daemon, Room, free_port, write_config

CHUNK = 1 << 20


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def make_file(path: Path, size: int) -> str:
    """Write ``size`` bytes of noise (incompressible) to ``path``; its hex SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


async def one_run(workdir: Path, size: int) -> dict[str, float]:
    agency, acme = free_port(), free_port()
    config = write_config(workdir / "roomlink.yaml", {
        "parties": {"agency": {"store": f"sqlite:///{workdir}/agency.db"},
                    "acme": {"store": f"sqlite:///{workdir}/acme.db"}},
        "connectors": {
            "agency-api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{agency}",
                           "max_file_bytes": max(size, 1)},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{acme}"},
        },
        "pipes": {"p": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                  {"connector": "acme-api", "room": "lobby"}]}},
    })
    source = workdir / "big.bin"
    sha256 = make_file(source, size)
    daemon = Daemon(config, [agency, acme])
    await daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            poster, watcher = Room(http, agency, "lobby"), Room(http, acme, "lobby")
            async with watcher.stream() as stream:
                await poster.post("warm-up", "bench")
                await stream.wait_for(1)
                before = peak_rss_mib(pid)
                with source.open("rb") as f:  # streamed from disk by aiohttp
                    form = aiohttp.FormData()
                    form.add_field("message", '{"text": "the big one", "author": "bench"}',
                                   content_type="application/json")
                    form.add_field("file", f, filename="big.bin",
                                   content_type="application/octet-stream")
                    start = time.perf_counter()
                    async with http.post(f"{poster.base}/messages", data=form) as resp:
                        answer = await resp.json()
                        assert resp.status == 202, answer
                    uploaded = time.perf_counter()
                frame = (await stream.wait_for(2, timeout=600))[1]
                relayed = time.perf_counter()
            [att] = frame["attachments"]
            digest = hashlib.sha256()
            got = 0
            fetch = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{acme}{att['url']}") as resp:
                assert resp.status == 200
                async for block in resp.content.iter_chunked(CHUNK):
                    digest.update(block)
                    got += len(block)
            done = time.perf_counter()
            assert (got, digest.hexdigest()) == (size, sha256), "the bytes differ"
            after = peak_rss_mib(pid)
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
    return {"upload": uploaded - start, "relay": relayed - start, "download": done - fetch,
            "rss_before": before, "rss_after": after}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=25.0, help="file size in MiB (25)")
    parser.add_argument("--runs", type=int, default=1, help="runs, each a fresh daemon (1)")
    args = parser.parse_args()
    size = int(args.mib * 1024 * 1024)
    load = os.getloadavg()
    print(f"file {size} bytes; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"{os.cpu_count()} cores; {platform.system()} {platform.release()}")
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="rl-bench-files-") as tmp:
            r = await one_run(Path(tmp), size)
        print(f"run {run + 1}: upload (202) {r['upload']:.2f} s, relayed (frame) "
              f"{r['relay']:.2f} s, download {r['download']:.2f} s; daemon peak RSS "
              f"{r['rss_before']:.1f} MiB before, {r['rss_after']:.1f} MiB after "
              f"(+{r['rss_after'] - r['rss_before']:.1f} MiB)")


if __name__ == "__main__":
    asyncio.run(main())
