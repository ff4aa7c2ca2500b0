"""Test kit: run the real ``roomlink`` process and talk to its API rooms."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_beside(test_file: str, module: str, unique_name: str) -> Any:
    """Import ``module``.py from the folder of ``test_file`` under ``unique_name``: several
    connectors' test folders hold a ``server.py``, and pytest would mix them up."""
    if unique_name not in sys.modules:
        path = Path(test_file).with_name(f"{module}.py")
        spec = importlib.util.spec_from_file_location(unique_name, path)
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[unique_name] = loaded
        spec.loader.exec_module(loaded)
    return sys.modules[unique_name]


# Test servers get their ports from a band below the kernel's ephemeral range (32768 and
# up on Linux), one slice per pytest-xdist worker. A port the kernel picks (bind to 0) can be
# handed out again before the server binds it: to another worker's server, or as the source
# port of any client connection; in a slice of its own, no other worker and no client
# socket ever takes it. The walk starts at a random point so that two sessions run at once
# (say, one helper's `pytest tests/irc` beside the whole suite) rarely meet.
_PORT_BAND = (20000, 32000)


def _port_slice() -> range:
    low, high = _PORT_BAND
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under xdist
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 1:
        return range(low, high)
    size = (high - low) // count
    start = low + int(worker[2:]) % count * size
    return range(start, start + size)


_PORTS = _port_slice()
_next_port = itertools.count(random.randrange(len(_PORTS)))


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on, from this worker's slice of the band."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: skips ports in TIME_WAIT too
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {_PORTS}")


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def plugin_env(tmp_path: Path, module: str, source: str, entry: str) -> dict[str, str]:
    """Ship ``source`` as a third-party connector plugin, the way any plugin is shipped (an
    entry point named ``entry``); returns the environment under which roomlink finds it."""
    site = tmp_path / "site"
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / f"{module}.py").write_text(source)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[roomlink.connectors]\n{entry} = {module}:{entry.capitalize()}\n")
    return {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def roomlink_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "roomlink", *args]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        roomlink_cmd(*args), capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def export(
    config: Path, party: str, pipe: str | None = None, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    args = ["history", "export", "-c", str(config), "--party", party]
    if pipe:
        args += ["--pipe", pipe]
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something listens on ``port``; OSError if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise OSError(f"the process exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


class Daemon:
    """``roomlink run`` as a child process, its log in ``log_path``."""

    def __init__(self, config: Path, ports: list[int], env: dict[str, str] | None = None):
        self.config = config
        self.ports = ports
        self.env = {**os.environ, **(env or {})}
        self.log_path = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            roomlink_cmd("run", "-c", str(self.config)), stdout=log, stderr=log, env=self.env
        )
        log.close()
        try:
            for port in self.ports:
                # a start takes a second or two; a minute allows for a machine loaded by a
                # parallel run (each start is a few Python processes: the daemon, migrations)
                await wait_port(port, timeout=60, proc=self.proc)
        except OSError:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("roomlink did not start:\n" + self.log()) from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_log(self, text: str, timeout: float = 30) -> None:
        """Until ``text`` is in the log: lines written after the port opened come later."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.log()}"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.asynccontextmanager
async def running(config: Path, ports: list[int], env: dict[str, str] | None = None
                  ) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, ports, env)
    await daemon.start()
    try:
        yield daemon
    finally:
        daemon.cleanup()


class Room:
    """One API room as a client sees it."""

    def __init__(self, session: aiohttp.ClientSession, port: int, room: str,
                 token: str | None = None):
        self.session = session
        self.base = f"http://127.0.0.1:{port}/v1/rooms/{room}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def post(self, text: str, author: str, key: str | None = None,
                   reply_to: str | None = None) -> dict[str, Any]:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        body = {"text": text, "author": author}
        if reply_to is not None:
            body["reply_to"] = reply_to
        return await self._call("POST", f"{self.base}/messages", body, headers)

    async def edit(self, message_id: str, text: str, author: str) -> dict[str, Any]:
        return await self._call("PATCH", f"{self.base}/messages/{message_id}",
                                {"text": text, "author": author}, self.headers)

    async def delete(self, message_id: str, author: str) -> dict[str, Any]:
        return await self._call("DELETE", f"{self.base}/messages/{message_id}",
                                {"author": author}, self.headers)

    async def _call(self, method: str, url: str, body: dict[str, str],
                    headers: dict[str, str]) -> dict[str, Any]:
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            answer: dict[str, Any] = await resp.json()
            assert resp.status == 202, (resp.status, answer)
            return answer

    async def post_until_accepted(self, text: str, author: str, key: str,
                                  timeout: float = 60) -> str:
        """Retry through daemon restarts, as a careful client would."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                body = await self.post(text, author, key)
                return str(body["id"])
            except (TimeoutError, aiohttp.ClientError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def stream(self) -> Stream:
        return Stream(self)


class Stream:
    """Reads a room's WebSocket into ``frames``, reconnecting when the daemon restarts."""

    def __init__(self, room: Room):
        self.room = room
        self.frames: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        url = self.room.base + "/stream"
        while True:
            try:
                async with self.room.session.ws_connect(url, headers=self.room.headers) as ws:
                    self.connected.set()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.frames.append(json.loads(msg.data))
                            self._changed.set()
            except (aiohttp.ClientError, OSError):
                pass
            self.connected.clear()
            await asyncio.sleep(0.05)

    async def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.room.base}: {len(self.frames)} of {count} frames")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.frames
