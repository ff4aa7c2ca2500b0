"""Hostile HTTP against the real daemon: every answer is JSON, no traceback floods the
log, half-sent requests are timed out, and a listener caps its connections."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from roomlink_connectors.api.connector import ApiOptions

from rlkit import Room, free_port, running, write_config


def config_for(tmp_path: Path, limits: bool = False) -> tuple[Path, int, int]:
    """Two API rooms; with ``limits``, agency's timeouts are 1 s and acme takes at most
    3 connections."""
    agency, acme = free_port(), free_port()
    tight: dict[str, Any] = {"header_timeout": 1, "read_timeout": 1}
    path = write_config(
        tmp_path / "roomlink.yaml",
        {
            "parties": {
                "agency": {"store": "sqlite:///agency.db"},
                "acme": {"store": "sqlite:///acme.db"},
            },
            "connectors": {
                "agency-api": {
                    "party": "agency", "type": "api", "listen": f"127.0.0.1:{agency}",
                    **(tight if limits else {}),
                },
                "acme-api": {
                    "party": "acme", "type": "api", "listen": f"127.0.0.1:{acme}",
                    **({"max_connections": 3} if limits else {}),
                },
            },
            "pipes": {"project": {"rooms": [
                {"connector": "agency-api", "room": "lobby"},
                {"connector": "acme-api", "room": "lobby"},
            ]}},
        },
    )  # fmt: skip
    return path, agency, acme


async def _raw(port: int, data: bytes, read_for: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes (or ``read_for`` passes); the answer
    and how long the server kept the connection open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    got = b""
    try:
        writer.write(data)
        await writer.drain()
        deadline = start + read_for
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            got += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return got, time.monotonic() - start


async def test_every_error_is_json_and_charset_and_nesting_are_refused(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    base = f"http://127.0.0.1:{agency}/v1/rooms/lobby"
    ok = b'{"text": "hi", "author": "alice"}'
    cases: list[tuple[str, str, bytes, dict[str, str], int]] = [
        ("POST", "/messages", ok, {"Content-Type": "application/json; charset=bogus"}, 415),
        ("POST", "/messages", ok, {"Content-Type": "application/json; charset=latin-1"}, 415),
        ("POST", "/messages", b"[" * 5000 + b"]" * 5000, {}, 400),
        ("POST", "/messages", b'{"a":' * 3000 + b"1" + b"}" * 3000, {}, 400),
        ("PUT", "/messages", ok, {}, 405),
        ("GET", "/nowhere", b"", {}, 404),
    ]
    async with running(path, [agency, acme]) as daemon:
        async with aiohttp.ClientSession() as session:
            for method, where, body, headers, status in cases:
                async with session.request(method, base + where, data=body,
                                           headers=headers) as resp:
                    assert (resp.status, where) == (status, where)
                    assert resp.content_type == "application/json"
                    answer: dict[str, Any] = await resp.json()
                    assert isinstance(answer["error"], str) and answer["error"]
            # a declared UTF-8 charset is fine, and the daemon still works
            async with session.post(base + "/messages", data=ok, headers={
                    "Content-Type": "application/json; charset=UTF-8"}) as resp:
                assert resp.status == 202
        assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log()


async def test_malformed_http_logs_one_quiet_line_not_a_traceback(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    tls_hello = bytes.fromhex("16030100a5010000a10303") + b"\x00" * 160
    huge_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    many_headers = b"GET / HTTP/1.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(500)) + b"\r\n"
    async with running(path, [agency, acme]) as daemon:
        for _ in range(5):
            for data in (tls_hello, huge_header, many_headers):
                answer, _ = await _raw(acme, data, read_for=2)
                # refused with the same JSON error body as every other error
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), answer[:200]
                assert b"Content-Type: application/json" in head, answer[:300]
                assert body.startswith(b'{"error": '), answer[:300]
        async with aiohttp.ClientSession() as session:
            await Room(session, acme, "lobby").post("still here", "bob")
        assert daemon.terminate() == 0
    log = daemon.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    # rate-limited: 15 bad requests in a few seconds give one line (maybe two)
    assert 1 <= sum("bad request from a client" in line for line in log.splitlines()) <= 2


async def test_half_sent_requests_are_closed_and_connections_are_capped(tmp_path: Path) -> None:
    assert ApiOptions(listen="127.0.0.1:1").header_timeout <= 60
    assert ApiOptions(listen="127.0.0.1:1").read_timeout <= 60
    assert ApiOptions(listen="127.0.0.1:1").max_connections >= 500
    path, agency, acme = config_for(tmp_path, limits=True)
    async with running(path, [agency, acme]) as daemon:
        # agency: header_timeout 1, read_timeout 1
        head_only = b"POST /v1/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\n"
        _, held = await _raw(agency, head_only, read_for=10)
        assert held < 4
        big_body = (b"POST /v1/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{")
        _, held = await _raw(agency, big_body, read_for=10)
        assert held < 4
        _, held = await _raw(agency, b"", read_for=10)  # connect and say nothing
        assert held < 4
        # acme: max_connections 3; a fourth is closed at once, the first three still work
        conns = [await asyncio.open_connection("127.0.0.1", acme) for _ in range(3)]
        await asyncio.sleep(0.2)
        answer, held = await _raw(acme, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_for=5)
        assert answer == b"" and held < 2
        reader, writer = conns[0]
        writer.write(b"GET /v1/rooms/nowhere/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 404")
        for _, w in conns:
            w.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session:
            await Room(session, acme, "lobby").post("room again", "bob")
        assert daemon.terminate() == 0
