"""The daemon's own hint for watching a room is a command that works (issue 7, item 10),
and what it prints tells a person what happened: edits, deletes and replies name the
message they concern, and a stream the daemon closes ends with the id to resume from."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from pathlib import Path

import aiohttp

from e2e.test_slow_stream import config_for
from rlkit import Room, run_cli, running


async def test_the_logged_watch_command_prints_the_room(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    async with running(path, [agency, acme]) as daemon:
        hint = re.search(rf"watch with  (.+ watch http://127\.0\.0\.1:{acme}/\S+)", daemon.log())
        assert hint is not None, daemon.log()
        watch = subprocess.Popen(shlex.split(hint[1]), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert watch.stdout is not None
            first = await asyncio.to_thread(watch.stdout.readline)
            assert first.startswith("watching http://")
            async with aiohttp.ClientSession() as session:
                hello_id = (await Room(session, agency, "lobby").post("hello **acme**",
                                                                       "alice"))["id"]
                line = await asyncio.wait_for(asyncio.to_thread(watch.stdout.readline), 30)
                first_id = (await Room(session, agency, "lobby").post("again", "bob"))["id"]
                assert line.strip() == f"[project] alice: hello **acme**  [{hello_id}]"
                agency_room = Room(session, agency, "lobby")
                reply = (await agency_room.post("yes", "carol", reply_to=hello_id))["id"]
                edit = (await agency_room.edit(first_id, "again, edited", "bob"))["id"]
                delete = (await agency_room.delete(first_id, "bob"))["id"]
                lines = [await asyncio.wait_for(asyncio.to_thread(watch.stdout.readline), 30)
                         for _ in range(4)]
            assert [x.strip() for x in lines] == [
                f"[project] bob: again  [{first_id}]",
                f"[project] carol: yes  (reply to {hello_id})  [{reply}]",
                f"[project] bob edited {first_id}: again, edited  [{edit}]",
                f"[project] bob deleted {first_id}  [{delete}]",
            ]
            assert daemon.terminate() == 0
            assert watch.wait(10) == 0
            assert watch.stderr is not None
            assert watch.stderr.read().strip() == (
                f"stream closed by the daemon: 1001 roomlink is stopping; "
                f"resume with --after {delete}")
        finally:
            watch.terminate()
            watch.wait(10)


def test_watch_without_a_scheme_says_what_to_give() -> None:
    done = run_cli("watch", "127.0.0.1:8082/v1/rooms/lobby/stream")
    assert done.returncode == 2
    assert "give the room's stream as a full URL, e.g. http://" in done.stderr
