"""The daemon's own hint for watching a room is a command that works (issue 7, item 10)."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from pathlib import Path

import aiohttp

from e2e.test_slow_stream import config_for
from rlkit import Room, running


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
                await Room(session, agency, "lobby").post("hello **acme**", "alice")
            line = await asyncio.wait_for(asyncio.to_thread(watch.stdout.readline), 30)
            assert line.strip() == "[project] alice: hello **acme**"
        finally:
            watch.terminate()
            watch.wait(10)
        assert daemon.terminate() == 0
