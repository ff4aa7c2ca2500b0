"""Issue 7, items 2 and 3, against the real daemon: a stream client that never reads
neither stalls its room nor the daemon's shutdown; a slow one is told why it was
dropped; ``?after=ID`` replays what the room got since."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from pathlib import Path

import aiohttp

from rlkit import Room, free_port, running, write_config

BUFFER = 65536  # the smallest stream_buffer: a few dozen 4 KB frames


def config_for(tmp_path: Path) -> tuple[Path, int, int]:
    agency, acme = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {
            "agency-api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{agency}"},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{acme}",
                         "stream_buffer": BUFFER},
        },
        "pipes": {"project": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                        {"connector": "acme-api", "room": "lobby"}]}},
        "delivery": {"shutdown_grace": 3},
    })  # fmt: skip
    return path, agency, acme


async def _silent_client(port: int) -> socket.socket:
    """A raw WebSocket client of acme's lobby stream that never reads after the handshake."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (
        "GET /v1/rooms/lobby/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # the answer's head only, not a frame more
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def _read_all(sock: socket.socket, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    got, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16),
                                           deadline - time.monotonic())
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        got += chunk
    return got


def _close_code(data: bytes) -> int | None:
    """The code of the close frame among the server's (unmasked) frames, if any."""
    i = 0
    while i + 2 <= len(data):
        opcode, size = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if size == 126:
            size, i = struct.unpack("!H", data[i : i + 2])[0], i + 2
        elif size == 127:
            size, i = struct.unpack("!Q", data[i : i + 8])[0], i + 8
        if opcode == 8 and size >= 2:
            return int(struct.unpack("!H", data[i : i + 2])[0])
        i += size
    return None


async def _post_many(room: Room, count: int, size: int) -> list[str]:
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        async with gate:
            body = await room.post(f"{i:05d} " + "x" * size, "alice", key=f"k{i}")
            return str(body["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_a_client_that_never_reads_does_not_stall_its_room(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    async with running(path, [agency, acme]) as daemon:
        async with aiohttp.ClientSession() as session:
            async with Room(session, acme, "lobby").stream() as normal:
                silent = await _silent_client(acme)
                started = time.monotonic()
                await _post_many(Room(session, agency, "lobby"), 2000, 4096)
                frames = await normal.wait_for(2000, timeout=120)
                took = time.monotonic() - started
                assert sorted(f["text"][:5] for f in frames) == [f"{i:05d}" for i in range(2000)]
                # the silent one was cut off, with a close frame after what it could hold
                data = await _read_all(silent, timeout=10)
                silent.close()
                assert _close_code(data) == 4008
        # item 3: SIGTERM with such a client still gives exit 0 within shutdown_grace
        silent = await _silent_client(acme)
        async with aiohttp.ClientSession() as session:
            await _post_many(Room(session, agency, "lobby"), 100, 4096)
        stopping = time.monotonic()
        assert daemon.terminate() == 0
        assert time.monotonic() - stopping < 3 + 2
        silent.close()
    log = daemon.log()
    assert "Traceback" not in log and "CancelledError" not in log
    assert log.rstrip().endswith("stopped")
    print(f"2000 frames of 4 KB to the normal client in {took:.1f}s (loaded machine)")


async def test_after_replays_what_the_room_received(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    async with running(path, [agency, acme]) as daemon:
        async with aiohttp.ClientSession() as session:
            async with Room(session, acme, "lobby").stream() as stream:
                ids = await _post_many(Room(session, agency, "lobby"), 30, 10)
                await stream.wait_for(30)
            order = [f["id"] for f in stream.frames]
            assert sorted(order) == sorted(ids)
            url = f"http://127.0.0.1:{acme}/v1/rooms/lobby/stream"
            async with session.ws_connect(url, params={"after": order[9]}) as ws:
                replayed = [(await ws.receive_json(timeout=10))["id"] for _ in range(20)]
            assert replayed == order[10:]
            async with session.get(url, params={"after": "no-such-id"}) as resp:
                assert resp.status == 404
                assert "error" in await resp.json()
        assert daemon.terminate() == 0
