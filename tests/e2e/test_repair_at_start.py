"""A kill -9 between the two stores' commits, against the real daemon with two API rooms:
the restart gives the party whose store missed the message what the other's holds, so
without any retry by the client the message is in both parties' records (``history
verify`` and ``digest`` equal) and reaches the other room once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp

from rlkit import Daemon, Room, free_port, run_cli, write_config

PIPE = "demo"


def _stored(db: Path, text: str) -> bool:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (n,) = conn.execute("SELECT count(*) FROM messages WHERE text = ?", (text,)).fetchone()
    return bool(n)


def _settled(*dbs: Path) -> bool:
    """No copy waits in either store's outbox: every delivery so far is marked done."""
    for db in dbs:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        if n:
            return False
    return True


async def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _history(config: Path, *args: str) -> str:
    done = run_cli("history", *args, "-c", str(config))
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout.strip()


async def test_a_message_one_store_missed_at_a_kill_is_in_both_records_after_the_restart(
    tmp_path: Path,
) -> None:
    agency_port, acme_port = free_port(), free_port()
    config = write_config(tmp_path / "roomlink.yaml", {
        "parties": {p: {"store": f"sqlite:///{tmp_path / p}.db"} for p in ("agency", "acme")},
        "connectors": {
            "agency-api": {"party": "agency", "type": "api",
                           "listen": f"127.0.0.1:{agency_port}"},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{acme_port}"},
        },
        "pipes": {PIPE: {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                   {"connector": "acme-api", "room": "lobby"}]}},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0},
    })  # fmt: skip
    daemon = Daemon(config, [agency_port, acme_port])
    said = [("agency", "before the crashes"),
            ("acme", "said in acme's room as the bridge died"),
            ("agency", "said in agency's room as the bridge died")]
    try:
        async with aiohttp.ClientSession() as http:
            rooms = {"agency": Room(http, agency_port, "lobby"),
                     "acme": Room(http, acme_port, "lobby")}
            streams = {party: room.stream() for party, room in rooms.items()}
            await daemon.start()
            for stream in streams.values():
                await stream.__aenter__()
            await rooms["agency"].post(said[0][1], "Alice")
            await streams["acme"].wait_for(1)
            for room, text in said[1:]:
                # what the last start delivered is marked so before the next kill: the one
                # message in flight may come twice at a kill -9, and this test counts copies
                await _until(partial(_settled, *(tmp_path / f"{p}.db" for p in rooms)),
                             "every delivery marked done")
                # the router writes acme's store, then agency's: with agency's held
                # locked, the message is in acme's store only when the process dies
                with contextlib.closing(sqlite3.connect(tmp_path / "agency.db",
                                                        isolation_level=None)) as lock:
                    lock.execute("BEGIN IMMEDIATE")
                    post = asyncio.create_task(rooms[room].post(text, "Bob"))
                    await _until(partial(_stored, tmp_path / "acme.db", text),
                                 f"{text!r} in acme's store")
                    daemon.kill()
                with contextlib.suppress(AssertionError, aiohttp.ClientError):
                    await post
                    raise RuntimeError("a 202 for a message agency's store never took")
                # the client got no 202, and does not retry
                assert not _stored(tmp_path / "agency.db", text)
                await daemon.start()
            # each reaches the room of the other party, once
            await _until(lambda: any(f["text"] == said[1][1] for f in streams["agency"].frames),
                         "acme's message in agency's room")
            await _until(lambda: any(f["text"] == said[2][1] for f in streams["acme"].frames),
                         "agency's message in acme's room")
            await asyncio.sleep(2.0)  # whatever else would come, has come
            for party, stream in streams.items():
                got = [f["text"] for f in stream.frames]
                assert got == [t for origin, t in said if origin != party], (party, got)
            for stream in streams.values():
                await stream.__aexit__(None, None, None)
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]
    # one line per repaired store and crash: agency's lacked one message each time
    repaired = re.findall(r"store of party agency lacked the last 1 messages of pipe demo", log)
    assert len(repaired) == 2, log[-3000:]
    # both records: the same messages in the same order, intact, with equal digests
    verified = {}
    for party in ("agency", "acme"):
        out = _history(config, "verify", "--party", party)
        found = re.search(rf"^{PIPE}: intact, (\d+) records, head ([0-9a-f]{{64}})$", out,
                          re.M)
        assert found, out
        verified[party] = found.groups()
    assert verified["agency"] == verified["acme"]
    assert verified["agency"][0] == "3"
    digests = {p: _history(config, "digest", "--party", p, "--pipe", PIPE)
               for p in ("agency", "acme")}
    assert digests["agency"] == digests["acme"], digests
