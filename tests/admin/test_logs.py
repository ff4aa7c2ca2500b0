"""``--log-format json`` / ROOMLINK_LOG_FORMAT: every line one JSON object, no secret."""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp

from rlkit import Daemon, Room, free_port, plugin_env, run_cli, write_config

SECRET = "tok-9f8e7d6c5b4a"
STORE_PASSWORD = "pg-pa55-word-77"
ADMIN_SECRET = "admin-s3cret-42"

# a platform that refuses every message and, as some do, echoes the token in its error
REFUSING_PLUGIN = '''
from pydantic import SecretStr
from roomlink.connector.base import Connector, ConnectorOptions
from roomlink.errors import PermanentError

class Options(ConnectorOptions):
    token: SecretStr

class Refusing(Connector):
    platform = "refusing"
    Options = Options

    async def start(self):
        self.ctx.log.info("connecting with token %s", self.options.token.get_secret_value())

    async def stop(self):
        pass

    def is_ready(self, room):
        return True

    async def wait_ready(self, room):
        return None

    async def send(self, out):
        raise PermanentError(f"401 invalid_auth for {self.options.token.get_secret_value()}")
'''


def parse_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "no log lines"
    parsed = []
    for line in lines:
        record = json.loads(line)  # each line alone is one JSON object
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        parsed.append(record)
    return parsed


async def test_json_lines_with_fields_and_no_secret(tmp_path: Path) -> None:
    env = plugin_env(tmp_path, "refusing_plugin", textwrap.dedent(REFUSING_PLUGIN), "refusing")
    env["ROOMLINK_LOG_FORMAT"] = "json"
    env["BOT_TOKEN"] = SECRET
    port, admin = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"}},
        "connectors": {
            "api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"},
            "chat": {"party": "agency", "type": "refusing", "token": "${BOT_TOKEN}"},
        },
        "pipes": {"main": {"rooms": [{"connector": "api", "room": "lobby"},
                                     {"connector": "chat", "room": "general"}]}},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": ADMIN_SECRET},
    })
    daemon = Daemon(path, [port, admin], env=env)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            said = await Room(http, port, "lobby").post("hello", "alice")
            # an edit of a message never said in this room is refused and logged
            async with http.patch(f"http://127.0.0.1:{port}/v1/rooms/lobby/messages/nope",
                                  json={"text": "forged", "author": "mallory"}) as resp:
                assert resp.status == 404
        deadline = time.monotonic() + 20
        while "marked failed" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            await asyncio.sleep(0.05)
        # a reload of a broken file: each error one object, with its file, line and key
        path.write_text(path.read_text().replace("room: lobby", "rom: lobby", 1))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        while "reload rejected" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            await asyncio.sleep(0.05)
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()

    text = daemon.log()
    assert SECRET not in text and ADMIN_SECRET not in text
    records = parse_lines(text)
    connecting = next(r for r in records if r["message"].startswith("connecting with token"))
    assert connecting["message"] == "connecting with token ***"
    assert connecting["connector"] == "chat" and connecting["level"] == "INFO"
    failed = next(r for r in records if "marked failed" in r["message"])
    assert failed["level"] == "ERROR" and "***" in failed["message"]
    assert (failed["connector"], failed["room"], failed["party"], failed["message_id"]) == (
        "chat", "general", "agency", said["id"])
    ignored = next(r for r in records if "not said in this room" in r["message"])
    assert (ignored["connector"], ignored["room"], ignored["party"]) == ("api", "lobby", "agency")
    issue = next(r for r in records if r["message"].endswith("unknown key 'rom'; did you mean "
                                                             "'room'?"))
    assert issue["file"] == str(path) and isinstance(issue["line"], int)
    assert issue["key"] == "pipes.main.rooms[0].rom"
    assert records[-1]["message"] == "stopped"


def test_fatal_errors_at_start_are_json_too(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {
            "store": f"postgresql://bridge:{STORE_PASSWORD}@127.0.0.1:1/none"}},
        "connectors": {"api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"}},
        "pipes": {"main": {"rooms": [{"connector": "api", "room": "a"},
                                     {"connector": "api", "room": "b"}]}},
    })
    done = run_cli("run", "-c", str(path), "--log-format", "json")
    assert done.returncode == 1
    assert STORE_PASSWORD not in done.stderr + done.stdout
    fatal = parse_lines(done.stderr)[-1]
    assert fatal["level"] == "ERROR" and "cannot open store" in fatal["message"]

    # a config that does not load: one object per error, before anything else is set up
    path.write_text(path.read_text().replace("room: a", "rom: a"))
    done = run_cli("run", "-c", str(path), env={"ROOMLINK_LOG_FORMAT": "json"})
    assert done.returncode == 2
    issues = parse_lines(done.stderr)
    assert {i["key"] for i in issues} == {"pipes.main.rooms[0].rom", "pipes.main.rooms[0].room"}
    assert all(i["level"] == "ERROR" and i["file"] == str(path) for i in issues)

    # the text format stays the default
    done = run_cli("run", "-c", str(path))
    assert done.returncode == 2 and done.stderr.startswith(f"{path}:")
