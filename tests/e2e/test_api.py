"""The HTTP API connector's contract, against the real ``roomlink`` process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rlkit import Room, export, free_port, running, write_config

TOKEN = "s3cret-token-value"


def config_for(tmp_path: Path) -> tuple[Path, int, int]:
    agency, acme = free_port(), free_port()
    path = write_config(
        tmp_path / "roomlink.yaml",
        {
            "parties": {
                "agency": {"store": "sqlite:///agency.db"},
                "acme": {"store": "sqlite:///acme.db"},
            },
            "connectors": {
                "agency-api": {
                    "party": "agency",
                    "type": "api",
                    "listen": f"127.0.0.1:{agency}",
                    "token": "${API_TOKEN}",
                    "max_text_length": 100,
                },
                "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{acme}"},
            },
            "pipes": {
                "project": {
                    "rooms": [
                        {"connector": "agency-api", "room": "lobby"},
                        {"connector": "agency-api", "room": "announce", "direction": "out"},
                        {"connector": "acme-api", "room": "lobby"},
                    ]
                }
            },
        },
    )
    return path, agency, acme


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes | dict[str, Any], token: str | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"data": body}
    async with session.post(url, headers=headers, **kwargs) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_bad_requests_get_a_json_4xx_and_store_nothing(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    base = f"http://127.0.0.1:{agency}/v1/rooms"
    ok = {"text": "hi", "author": "alice"}
    cases: list[tuple[str, bytes | dict[str, Any], str | None, int]] = [
        ("lobby", ok, None, 401),
        ("lobby", ok, "wrong", 401),
        ("lobby", b"{not json", TOKEN, 400),
        ("lobby", b"\xff\xfe invalid utf-8", TOKEN, 400),
        ("lobby", b"[1, 2]", TOKEN, 400),
        ("lobby", {"text": "hi"}, TOKEN, 400),
        ("lobby", {"text": 5, "author": "alice"}, TOKEN, 400),
        ("lobby", {"text": "hi", "author": ""}, TOKEN, 400),
        ("lobby", {"text": "hi", "author": "alice", "reply_to": 7}, TOKEN, 400),
        ("lobby", {"text": "x" * 101, "author": "alice"}, TOKEN, 413),
        ("lobby", b'{"text": "' + b"y" * 2_000_000 + b'"}', TOKEN, 413),
        ("nowhere", ok, TOKEN, 404),
        ("announce", ok, TOKEN, 403),
    ]
    async with running(path, [agency, acme], env={"API_TOKEN": TOKEN}) as daemon:
        async with aiohttp.ClientSession() as session:
            for room, body, token, status in cases:
                got, answer = await _post(session, f"{base}/{room}/messages", body, token)
                assert (got, room) == (status, room), answer
                assert isinstance(answer.get("error"), str) and answer["error"]
            async with session.get(f"{base}/lobby/stream") as resp:
                assert resp.status == 401  # the stream needs the token too
            # the limit is inclusive, and a good post still works after all that
            status, answer = await _post(
                session, f"{base}/lobby/messages", {"text": "y" * 100, "author": "bob"}, TOKEN
            )
            assert status == 202 and answer["id"]
        assert daemon.terminate() == 0
    assert TOKEN not in daemon.log()
    for party in ("agency", "acme"):
        record = export(path, party, env={"API_TOKEN": TOKEN})
        assert [(m["author"]["name"], m["text"]) for m in record] == [("bob", "y" * 100)]


async def test_idempotency_key_makes_a_retried_post_safe(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    async with running(path, [agency, acme], env={"API_TOKEN": TOKEN}):
        async with aiohttp.ClientSession() as session:
            room = Room(session, agency, "lobby", token=TOKEN)
            first = await room.post("only once", "alice", key="req-1")
            again = await room.post("only once", "alice", key="req-1")
            other = await room.post("only once", "alice", key="req-2")
            async with Room(session, acme, "lobby").stream() as stream:
                frames = await stream.wait_for(2)
    assert first["id"] == again["id"] != other["id"]
    assert [f["id"] for f in frames] == [first["id"], other["id"]]
    assert len(export(path, "agency", env={"API_TOKEN": TOKEN})) == 2


@pytest.mark.parametrize("hostile", ["@channel hi", "<script>x</script>", "a\r\nQUIT :bye\x00"])
async def test_hostile_text_is_relayed_verbatim_never_interpreted(
    tmp_path: Path, hostile: str
) -> None:
    path, agency, acme = config_for(tmp_path)
    async with running(path, [agency, acme], env={"API_TOKEN": TOKEN}):
        async with aiohttp.ClientSession() as session:
            async with Room(session, acme, "lobby").stream() as stream:
                await Room(session, agency, "lobby", token=TOKEN).post(hostile, "mallory")
                [frame] = await stream.wait_for(1)
    assert frame["author"]["name"] == "mallory"
    assert frame["author"]["party"] == "agency"
    # NUL is the one character no store can hold alike: it arrives as U+FFFD
    assert frame["text"] == hostile.replace("\x00", "\ufffd")
