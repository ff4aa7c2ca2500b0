"""Replicas of one config (``cluster.enabled``) as real processes on the real PostgreSQL:
each a ``roomlink run`` with its own admin port (``ADMIN_PORT``), id and log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from rlkit import Daemon, free_port, run_cli, write_config
from store.conftest import pg_database

LEASE_SECONDS = 5.0  # short, so that a test's failovers take seconds


class Replica(Daemon):
    """One replica: ready once its admin server answers (a replica listens for an API
    connector only while it runs it)."""

    def __init__(self, config: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.admin_port = free_port()
        self.name = name
        super().__init__(config, [self.admin_port],
                         {**(env or {}), "ADMIN_PORT": str(self.admin_port),
                          "ROOMLINK_REPLICA_ID": name})
        self.log_path = config.with_name(f"{config.stem}-{name}.log")

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"http://127.0.0.1:{self.admin_port}/api/status") as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def runs(self, http: aiohttp.ClientSession) -> list[str]:
        """The connectors this replica runs, by its /api/status."""
        try:
            replica = (await self.status(http))["replica"]
        except (aiohttp.ClientError, OSError):
            return []
        return list(replica["connectors"])


async def wait_until(check: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = 60) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def databases(parties: Sequence[str]) -> AsyncIterator[dict[str, str]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {p: await stack.enter_async_context(pg_database()) for p in parties}


def cluster_config(path: Path, stores: dict[str, str], connectors: dict[str, dict[str, Any]],
                   pipes: dict[str, Any], lease_seconds: float = LEASE_SECONDS) -> Path:
    return write_config(path, {
        "parties": {p: {"store": url} for p, url in stores.items()},
        "connectors": connectors,
        "pipes": pipes,
        "admin": {"listen": "127.0.0.1:${ADMIN_PORT}"},
        "cluster": {"enabled": True, "lease_seconds": lease_seconds},
        "delivery": {"shutdown_grace": 1.0},
    })


def cli(*args: str) -> str:
    """A ``roomlink`` command on the replicas' config (which names ${ADMIN_PORT})."""
    done = run_cli(*args, env={"ADMIN_PORT": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def owners(http: aiohttp.ClientSession, replicas: Sequence[Replica]
                 ) -> dict[str, list[str]]:
    """Connector -> the replicas that say they run it."""
    found: dict[str, list[str]] = {}
    for replica in replicas:
        if replica.proc is not None and replica.proc.poll() is None:
            for name in await replica.runs(http):
                found.setdefault(name, []).append(replica.name)
    return found


class Proxy:
    """A TCP forwarder to PostgreSQL that a test cuts: the replica behind it loses its
    database at once (every connection broken off, no new one accepted), as a replica on
    the wrong side of a network partition."""

    def __init__(self, target_port: int = 5432) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.client_ports: set[int] = set()  # what the server sees as the replica's ports

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        self.client_ports.add(up_writer.get_extra_info("sockname")[1])

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def terminate_backends(self) -> int:
        """``pg_terminate_backend`` of every server process of the replica behind this
        proxy (it may connect again); how many there were."""
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE client_port = ANY($1::int[])", sorted(self.client_ports))
        finally:
            await conn.close()
        return len(rows)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
