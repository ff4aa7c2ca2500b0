"""A real ngIRCd for tests, and a raw IRC client that plays a human in its channels."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlkit import free_port, wait_port, write_config

NGIRCD = shutil.which("ngircd") or "/usr/sbin/ngircd"
SERVER_NAME = "irc.test.local"
BOT = "rlbot"


@dataclass
class Ngircd:
    """ngIRCd on 127.0.0.1, started with -n so that its PID is ours to stop."""

    workdir: Path
    penalties: bool = False  # True: the server's default flood control
    channels: dict[str, str] = field(default_factory=dict)  # predefined channel -> key
    password: str | None = None
    tls: bool = False  # also listen with TLS on tls_port (a self-signed certificate)
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    confdir: Path | None = None

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.confdir is None:  # ngIRCd re-reads it on SIGHUP as nobody: world-readable
            self.confdir = Path(tempfile.mkdtemp(prefix="roomlink-ngircd-"))
            self.confdir.chmod(0o755)
        penalty = "" if self.penalties else "    MaxPenaltyTime = 0\n"
        password = f"    Password = {self.password}\n" if self.password else ""
        chans = "".join(
            f"[Channel]\n    Name = {name}\n    Modes = tnk\n    Key = {key}\n"
            for name, key in self.channels.items()
        )
        tls = ""
        if self.tls:
            cert, key = self.confdir / "cert.pem", self.confdir / "key.pem"
            if not cert.exists():
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                "-subj", "/CN=localhost", "-days", "1", "-keyout", str(key),
                                "-out", str(cert)], check=True, capture_output=True)
                key.chmod(0o644)
            tls = (f"[SSL]\n    CertFile = {cert}\n    KeyFile = {key}\n"
                   f"    Ports = {self.tls_port}\n")
        conf = self.confdir / "ngircd.conf"
        conf.write_text(
            "[Global]\n"
            f"    Name = {SERVER_NAME}\n    Info = test ngircd\n"
            "    AdminInfo1 = test\n    AdminInfo2 = test\n    AdminEMail = admin@test.local\n"
            f"    Listen = 127.0.0.1\n    Ports = {self.port}\n    MotdPhrase = test server\n"
            "    ServerUID = nobody\n    ServerGID = nogroup\n" + password +
            "[Limits]\n    MaxConnectionsIP = 0\n    MaxJoins = 0\n    MaxNickLength = 30\n"
            "    PingTimeout = 120\n    PongTimeout = 60\n" + penalty +
            "[Options]\n    DNS = no\n    Ident = no\n    PAM = no\n" + chans + tls
        )
        conf.chmod(0o644)
        return conf

    async def start(self) -> None:
        conf = self.write_config()
        log = (self.workdir / "ngircd.log").open("ab")
        self.proc = subprocess.Popen([NGIRCD, "-n", "-f", str(conf)], stdout=log, stderr=log)
        log.close()
        try:
            await wait_port(self.port, timeout=10, proc=self.proc)
            if self.tls:
                await wait_port(self.tls_port, timeout=10, proc=self.proc)
        except OSError:
            self.stop()
            raise AssertionError("ngircd did not start:\n" + self.log()) from None

    def log(self) -> str:
        path = self.workdir / "ngircd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: every connection drops at once, as when a server dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.confdir is not None:
            shutil.rmtree(self.confdir, ignore_errors=True)
            self.confdir = None


@dataclass
class Line:
    raw: bytes
    prefix: str
    command: str
    params: list[str]

    @property
    def nick(self) -> str:
        return self.prefix.split("!", 1)[0]


def parse(raw: bytes) -> Line:
    text = raw.decode("utf-8", "replace")
    prefix = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
    head, sep, trailing = text.partition(" :")
    params = head.split()
    command = params.pop(0).upper() if params else ""
    if sep:
        params.append(trailing)
    return Line(raw, prefix, command, params)


class IrcUser:
    """A person on IRC, speaking raw protocol; keeps every line it receives."""

    def __init__(self, port: int, nick: str) -> None:
        self.port = port
        self.nick = nick
        self.lines: list[Line] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, password: str | None = None) -> IrcUser:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._task = asyncio.create_task(self._read())
        if password:
            self.send(f"PASS {password}")
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :{self.nick}")
        await self.wait_line(lambda ln: ln.command == "001")
        return self

    def send(self, line: str) -> None:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\r\n")

    def send_bytes(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def join(self, channel: str, key: str = "") -> None:
        self.send(f"JOIN {channel} {key}".rstrip())
        await self.wait_line(lambda ln: ln.command == "366" and ln.params[1].lower()
                             == channel.lower())

    def say(self, channel: str, text: str) -> None:
        self.send(f"PRIVMSG {channel} :{text}")

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.send("QUIT :bye")
                self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            try:
                raw = await self._reader.readline()
            except (OSError, ValueError):
                raw = b""
            if not raw:
                return
            line = parse(raw.rstrip(b"\r\n"))
            line.raw = raw
            if line.command == "PING":
                self.send(f"PONG :{line.params[-1] if line.params else ''}")
            self.lines.append(line)
            self._changed.set()

    def privmsgs(self, channel: str, sender: str | None = BOT) -> list[Line]:
        """What ``sender`` (default: the bridge; None: anyone) said in ``channel``."""
        return [ln for ln in self.lines if ln.command == "PRIVMSG"
                and ln.params[0].lower() == channel.lower()
                and (sender is None or ln.nick == sender)]

    def texts(self, channel: str, sender: str | None = BOT) -> list[str]:
        return [ln.params[1] for ln in self.privmsgs(channel, sender)]

    async def wait_line(self, match: Callable[[Line], bool], timeout: float = 20) -> Line:
        start = 0
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                if match(line):
                    return line
            start = len(self.lines)
            await self._wait(deadline, lambda: f"no matching line; got {self.lines[-5:]}")

    async def wait_texts(self, channel: str, count: int, timeout: float = 30,
                         sender: str | None = BOT) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.texts(channel, sender)) < count:
            await self._wait(deadline, lambda: f"{len(self.texts(channel, sender))} of {count} "
                             f"messages in {channel}: {self.texts(channel, sender)[-3:]}")
        return self.texts(channel, sender)

    async def _wait(self, deadline: float, why: Callable[[], str]) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{self.nick}: {why()}")
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), remaining)


UserFactory = Callable[..., Awaitable[IrcUser]]  # the irc_user fixture


async def wait_until(check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


def bridge_config(tmp_path: Path, ircd: Ngircd, pipes: dict[str, list[str]],
                  **irc_options: object) -> tuple[Path, int]:
    """A config with one API connector (room ``lobby-<pipe>``) and one IRC connector;
    each pipe links its API room with the IRC channels given."""
    api_port = free_port()
    irc: dict[str, object] = {
        "party": "agency", "type": "irc", "server": "127.0.0.1", "port": ircd.port,
        "nick": BOT, "line_interval": 0.01, "burst_lines": 50,
        "reconnect_initial": 0.2, "reconnect_max": 2.0, **irc_options,
    }
    config = {
        "parties": {"agency": {"store": "sqlite:///agency.db"}},
        "connectors": {
            "api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{api_port}"},
            "irc": irc,
        },
        "pipes": {
            name: {"rooms": [{"connector": "api", "room": f"lobby-{name}"},
                             *({"connector": "irc", "room": ch} for ch in channels)]}
            for name, channels in pipes.items()
        },
    }
    return write_config(tmp_path / "roomlink.yaml", config), api_port


# -- fixtures (conftest files import these: the IRC and operations tests) ---------------

@pytest.fixture
async def ngircd(tmp_path: Path) -> AsyncIterator[Ngircd]:
    server = Ngircd(tmp_path / "ngircd")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def irc_user(ngircd: Ngircd) -> AsyncIterator[UserFactory]:
    """Connect a human to the test server: ``await irc_user("alice", "#room")``."""
    users: list[IrcUser] = []

    async def make(nick: str, *channels: str, port: int | None = None) -> IrcUser:
        user = IrcUser(port or ngircd.port, nick)
        users.append(user)
        await user.connect()
        for channel in channels:
            await user.join(channel)
        return user

    yield make
    for user in users:
        await user.close()
