"""Two or three real roomlink instances joined by links, each with its own API room."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit import free_port, run_cli, write_config
from roomlink.record.sign import instance_id, keygen

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Instance:
    """One roomlink instance: its party, its config file, its API room's port."""

    name: str  # its party
    folder: Path
    key: str = field(default_factory=lambda: keygen()[0])
    api_port: int = field(default_factory=free_port)
    link_ports: dict[str, int] = field(default_factory=dict)  # guest -> port it listens on
    store: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        return instance_id(self.key)

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}.yaml"

    @property
    def ports(self) -> list[int]:
        return [self.api_port, *self.link_ports.values()]

    def write(self) -> Path:
        return write_config(self.path, self.config)


def base(inst: Instance) -> dict[str, Any]:
    inst.folder.mkdir(parents=True, exist_ok=True)
    return {
        "instance": {"key": inst.key},
        "parties": {inst.name: {"store": inst.store or f"sqlite:///{inst.name}.db"}},
        "connectors": {f"{inst.name}-api": {"party": inst.name, "type": "api",
                                            "listen": f"127.0.0.1:{inst.api_port}"}},
        "pipes": {"project": {"rooms": [{"connector": f"{inst.name}-api", "room": "lobby"}]}},
        "delivery": {"backoff_initial": 0.2, "backoff_max": 1.0},
    }


def star(host: Instance, guests: list[Instance], **link: Any) -> None:
    """``host`` hosts conversation ``project``; every guest joins it through a link."""
    host.config = base(host)
    for guest in guests:
        port = host.link_ports.setdefault(guest.name, free_port())
        name = f"to-{guest.name}"
        host.config["connectors"][name] = {
            "party": host.name, "type": "link", "listen": f"127.0.0.1:{port}",
            "peer_key": guest.line, "peer_parties": [guest.name],
            **{k: v for k, v in link.items() if k in ("tls",)}}
        host.config["pipes"]["project"]["rooms"].append({"connector": name, "room": "project"})
        guest.config = base(guest)
        scheme = "wss" if "tls" in link else "ws"
        guest.config["connectors"][f"to-{host.name}"] = {
            "party": guest.name, "type": "link", "url": f"{scheme}://127.0.0.1:{port}",
            "peer_key": host.line, "reconnect_initial": 0.1, "reconnect_max": 0.5,
            **{k: v for k, v in link.items() if k in ("ca", "tls_verify")}}
        guest.config["pipes"]["project"]["rooms"].append(
            {"connector": f"to-{host.name}", "room": "project"})
    for inst in (host, *guests):
        inst.write()


def digest(inst: Instance) -> str:
    done = run_cli("history", "digest", "-c", str(inst.path), "--party", inst.name,
                   "--pipe", "project")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def agree(*instances: Instance, timeout: float = 60) -> str:
    """Until every instance prints the same digest line, which it returns: a guest records
    its own last message only once the host has placed it and sent it back."""
    deadline = time.monotonic() + timeout
    while len(lines := {digest(inst) for inst in instances}) > 1:
        assert time.monotonic() < deadline, lines
        await asyncio.sleep(0.2)
    return lines.pop()



class Cable:
    """A TCP relay the guest's link goes through to the host (:meth:`between`): it can be
    cut as a network goes away (no closing handshake) and plugged again, carries at most
    ``rate`` bytes a second each way when given one (a file then takes seconds to cross),
    and counts what it carried."""

    def __init__(self, port: int, target: int, rate: int | None = None) -> None:
        self.port, self.target, self.rate = port, target, rate
        self.carried = {"up": 0, "down": 0}  # guest -> host, host -> guest
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    def between(cls, guest: Instance, host: Instance, rate: int | None = None) -> Cable:
        """A cable from ``guest``'s link to ``host``'s port for it (written in the guest's
        config); not plugged yet."""
        cable = cls(free_port(), host.link_ports[guest.name], rate)
        guest.config["connectors"][f"to-{host.name}"]["url"] = f"ws://127.0.0.1:{cable.port}"
        guest.write()
        return cable

    async def plug(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        size = 65536 if self.rate is None else 16384  # throttled: in small steps

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str) -> None:
            try:
                while data := await src.read(size):
                    dst.write(data)
                    await dst.drain()
                    self.carried[way] += len(data)
                    if self.rate is not None:
                        await asyncio.sleep(len(data) / self.rate)
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer, "up"), copy(up_reader, writer, "down"))
        self._writers -= {writer, up_writer}
