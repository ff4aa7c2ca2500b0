"""The core's part of files on the way out, with the real ``roomlink`` process: a
destination that posts files natively gets the kept ones within its limit (their bytes
through ctx.files.open), a line with the link for the one over it, and, when it refuses
a file, the same part again as text with the lines. The destination is a small
connector plugin that writes what it was given to a file."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp

from filekit import PeerFile, pdf, png, post_files
from rlkit import Room, free_port, plugin_env, running, write_config

PICKY_PLUGIN = '''
import hashlib, json
from roomlink.connector.base import Connector, ConnectorOptions, Limits
from roomlink.connector.files import FileRefused

class Options(ConnectorOptions):
    log: str

class Picky(Connector):
    """Posts files up to 100 kB natively; refuses any file named refuse.bin."""
    platform = "picky"
    Options = Options

    @property
    def limits(self):
        return Limits(files=True, max_file_bytes=100_000)

    async def start(self): pass
    async def stop(self): pass
    def is_ready(self, room): return True
    async def wait_ready(self, room): return None

    async def send(self, out):
        files = []
        for a in out.files:
            digest = hashlib.sha256()
            async for chunk in self.ctx.files.open(a):
                digest.update(chunk)
            files.append({"name": a.name, "sha256": digest.hexdigest()})
        with open(self.options.log, "a") as f:
            f.write(json.dumps({"text": out.text, "files": files}) + "\\n")
        if any(a.name == "refuse.bin" for a in out.files):
            raise FileRefused("refuse.bin: the platform says no")
        return "n" + str(len(files))
'''


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def sent(log: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        lines = _lines(log)
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, lines
        await asyncio.sleep(0.05)


async def test_native_files_fallback_lines_and_a_refusal_resent_as_text(tmp_path: Path) -> None:
    env = plugin_env(tmp_path, "picky_plugin", textwrap.dedent(PICKY_PLUGIN), "picky")
    log = tmp_path / "picky.jsonl"
    port, admin = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db",
                               "files_url": f"http://127.0.0.1:{admin}/files/"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {
            "api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{port}"},
            "chat": {"party": "agency", "type": "picky", "log": str(log)},
        },
        "pipes": {"main": {"rooms": [{"connector": "api", "room": "lobby"},
                                     {"connector": "chat", "room": "general"}]}},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": "admin-token"},
    })
    small = PeerFile("small.png", "image/png", png(40, 30))
    big = PeerFile("big.pdf", "application/pdf", pdf(300_000))
    refused = PeerFile("refuse.bin", "application/octet-stream", b"\x00" * 1000)
    async with running(path, [port, admin], env=env) as daemon, \
            aiohttp.ClientSession() as http:
        base = Room(http, port, "lobby").base
        status, _ = await post_files(http, base, "two files", "ann", [small, big])
        assert status == 202
        first = (await sent(log, 1))[0]
        # the small one natively, its bytes from the agency's store; the big one a line
        assert first["files"] == [{"name": "small.png", "sha256": small.sha256}]
        text, line = first["text"].split("\n")
        assert text == "two files"
        assert line.startswith("\\[file: big.pdf (application/pdf, 293.1 KiB)\\] <http://")
        link = line.split("<")[1].rstrip(">")
        async with http.get(link) as resp:  # no admin token: the id is the secret
            assert (resp.status, await resp.read()) == (200, big.data)

        status, _ = await post_files(http, base, "", "ann", [refused])
        assert status == 202
        attempt, again = (await sent(log, 3))[1:3]
        assert attempt["files"] == [{"name": "refuse.bin", "sha256": refused.sha256}]
        assert again["files"] == []  # the same part again, the file as a line with its link
        assert again["text"].startswith("\\[file: refuse.bin (application/octet-stream, "
                                        "1000 bytes)\\] <http://")
        assert daemon.terminate() == 0, daemon.log()
