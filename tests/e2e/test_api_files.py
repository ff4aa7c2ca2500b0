"""Files through the HTTP API connector, against the real ``roomlink`` process: a
multipart POST in, frames with ``attachments`` and ``/v1/files/...`` downloads out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp

from filekit import SAMPLES, PeerFile, clean_name_ok, download, post_files, received
from rlkit import Room, export, free_port, running, write_config

TOKEN = "files-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config_for(tmp_path: Path, **agency_options: Any) -> tuple[Path, int, int]:
    """agency's API room (with a token, and ``agency_options``) piped to acme's (none)."""
    agency, acme = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {
            "agency-api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{agency}",
                           "token": TOKEN, **agency_options},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{acme}"},
        },
        "pipes": {"project": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                        {"connector": "acme-api", "room": "lobby"}]}},
    })
    return path, agency, acme


async def test_files_posted_as_multipart_reach_the_other_room_byte_for_byte(
        tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path)
    sent = list(SAMPLES)
    async with running(path, [agency, acme]) as daemon, aiohttp.ClientSession() as http:
        poster, reader = Room(http, agency, "lobby", token=TOKEN), Room(http, acme, "lobby")
        async with reader.stream() as stream:
            before = (await poster.post("the files come next", "alice"))["id"]
            status, answer = await post_files(http, poster.base, "the mock-ups", "alice", sent,
                                              {**AUTH, "Idempotency-Key": "upload-1"})
            assert status == 202, answer
            # a retry with the same key is the same message, kept once
            status, again = await post_files(http, poster.base, "the mock-ups", "alice", sent,
                                             {**AUTH, "Idempotency-Key": "upload-1"})
            assert (status, again["id"]) == (202, answer["id"])
            # files alone: no message part, no text; the author is the connector
            status, alone = await post_files(http, poster.base, None, None, sent[:1], AUTH)
            assert status == 202, alone
            _, first, second = await stream.wait_for(3)
        # a client resuming with ?after= gets the same frames, links and all
        async with http.ws_connect(f"{reader.base}/stream?after={before}") as ws:
            replayed = [await ws.receive_json(timeout=10) for _ in range(2)]
        assert replayed == [first, second]
        assert first["id"] == answer["id"] and first["text"] == "the mock-ups"
        assert first["author"]["name"] == "alice"
        assert [(a["name"], a["type"], a["size"], a["sha256"])
                for a in first["attachments"]] == [
            (a["name"], f.type, len(f.data), f.sha256)
            for a, f in zip(first["attachments"], sent, strict=True)]
        for att, f in zip(first["attachments"], sent, strict=True):
            assert clean_name_ok(att["name"], f.name), att["name"]
        got = await received(http, reader.base, first)
        assert [g.data for g in got] == [f.data for f in sent]
        assert (second["text"], second["author"]["name"]) == ("", "agency-api")
        assert [a["sha256"] for a in second["attachments"]] == [sent[0].sha256]

        status, data, headers = await download(http, reader.base, first["attachments"][0]["url"])
        assert (status, data) == (200, sent[0].data)
        assert headers["Content-Type"] == "image/png"
        assert headers["Content-Disposition"].startswith("attachment;")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in headers["Content-Security-Policy"]
        # the hostile name is safe in the header: one line, no quote of its own
        status, _, headers = await download(http, reader.base, first["attachments"][2]["url"])
        assert status == 200 and "\n" not in headers["Content-Disposition"]
        assert "\u202e" not in headers["Content-Disposition"]
        # a file id of acme's is nothing on agency's listener; a made-up one nothing anywhere
        url = first["attachments"][0]["url"]
        assert (await download(http, poster.base, url, AUTH))[0] == 404
        file_id = url.split("/")[3]
        for wrong in (f"/v1/files/{'0' * 32}/screenshot.png", f"/v1/files/{file_id}/..",
                      f"/v1/files/{file_id}/a%2Fb.png", "/v1/files/x"):
            status, _, headers = await download(http, reader.base, wrong)
            assert status == 404 and headers["Content-Type"].startswith("application/json"), wrong
        assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log()
    for party in ("agency", "acme"):
        records = export(path, party)
        assert [(m["text"], [a["sha256"] for a in m["attachments"]]) for m in records] == [
            ("the files come next", []), ("the mock-ups", [f.sha256 for f in sent]),
            ("", [sent[0].sha256])], party


async def test_agency_files_need_its_token(tmp_path: Path) -> None:
    """A room's own party's downloads are behind its connector's token (401 without)."""
    path, agency, acme = config_for(tmp_path)
    sent = [SAMPLES[1]]
    async with running(path, [agency, acme]), aiohttp.ClientSession() as http:
        poster, peer = Room(http, acme, "lobby"), Room(http, agency, "lobby", token=TOKEN)
        async with peer.stream() as stream:
            status, answer = await post_files(http, poster.base, "contract", "bob", sent)
            assert status == 202, answer
            [frame] = await stream.wait_for(1)
        url = frame["attachments"][0]["url"]
        assert (await download(http, peer.base, url))[0] == 401
        assert (await download(http, peer.base, url, {"Authorization": "Bearer no"}))[0] == 401
        status, data, headers = await download(http, peer.base, url, AUTH)
        assert (status, data, headers["Content-Type"]) == (200, sent[0].data, "application/pdf")


async def _raw_post(port: int, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{port}/v1/rooms/lobby/messages", data=body,
            headers={**AUTH, "Content-Type": content_type}) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def test_refused_uploads_get_a_json_4xx_and_keep_nothing(tmp_path: Path) -> None:
    path, agency, acme = config_for(tmp_path, max_file_bytes=100_000, max_files=2)
    small = PeerFile("a.txt", "text/plain", b"a" * 10)
    big = PeerFile("big.bin", "application/octet-stream", b"b" * 100_001)
    head = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
            b"Content-Type: text/plain\r\n\r\n")
    async with running(path, [agency, acme]) as daemon, aiohttp.ClientSession() as http:
        base = Room(http, agency, "lobby").base
        cases: list[tuple[str | None, str | None, list[PeerFile], int]] = [
            ("too big", "alice", [big], 413),
            ("far too big", "alice", [PeerFile("huge.bin", big.type, b"h" * 5_000_000)], 413),
            ("too big, after a good one", "alice", [small, big], 413),
            ("too many", "alice", [small, small, small], 413),
            ("", "alice", [], 400),  # no text and no file
            ("no author", "", [small], 400),
        ]
        for text, author, files, expected in cases:
            status, answer = await post_files(http, base, text, author, files, AUTH)
            assert (status, text) == (expected, text), answer
            assert isinstance(answer["error"], str) and answer["error"]
        raw_cases = [
            (head + b"cut off in the middle", "multipart/form-data; boundary=XYZ"),
            (b"no boundary at all", "multipart/form-data; boundary=XYZ"),
            (head + b"x\r\n--XYZ--\r\n", "multipart/form-data"),  # no boundary declared
            (b"--XYZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XYZ--\r\n",
             "multipart/form-data; boundary=XYZ"),
            (b"--XYZ\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n{bad\r\n"
             b"--XYZ--\r\n", "multipart/form-data; boundary=XYZ"),
        ]
        for body, content_type in raw_cases:
            status, answer = await _raw_post(agency, body, content_type)
            assert status == 400, (body[:60], answer)
            assert isinstance(answer["error"], str) and answer["error"]
        # at the limit is fine, and the connector still takes posts
        status, answer = await post_files(http, base, "just fits", "alice",
                                          [PeerFile("ok.bin", big.type, big.data[:100_000])],
                                          AUTH)
        assert status == 202, answer
        assert daemon.terminate() == 0
    log = daemon.log()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
    for party in ("agency", "acme"):
        assert [m["text"] for m in export(path, party)] == ["just fits"]


async def test_kill_9_in_the_middle_of_an_upload_leaves_nothing(tmp_path: Path) -> None:
    """The daemon dies while a file streams in: no store keeps the message or any byte of
    the file (nothing in the files folders but what a crash leaves in .tmp to clean); the
    client, which got no 202, posts again and the message arrives once, whole."""
    import asyncio

    from rlkit import Daemon

    path, agency, acme = config_for(tmp_path)
    data = SAMPLES[1].data * 40  # about 4 MB
    boundary = "cut-here"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n"
            "Content-Type: application/json\r\n\r\n"
            '{"text": "contract, signed", "author": "alice"}\r\n'
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"contract.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    daemon = Daemon(path, [agency, acme])
    await daemon.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", agency)
        writer.write(
            f"POST /v1/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{TOKEN}\r\nIdempotency-Key: k1\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(head) + len(data) + len(tail)}"
            "\r\n\r\n".encode() + head + data[:len(data) // 2])
        await writer.drain()
        await asyncio.sleep(1.0)  # half the file is in the daemon's hands
        daemon.kill()
        writer.close()
        for party in ("agency", "acme"):
            assert export(path, party) == [], party
        assert kept_files(tmp_path) == []
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            async with Room(http, acme, "lobby").stream() as stream:
                status, answer = await post_files(
                    http, Room(http, agency, "lobby").base, "contract, signed", "alice",
                    [PeerFile("contract.pdf", "application/pdf", data)],
                    {**AUTH, "Idempotency-Key": "k1"})
                assert status == 202, answer
                [frame] = await stream.wait_for(1)
            [got] = await received(http, Room(http, acme, "lobby").base, frame)
            assert got.data == data
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
    for party in ("agency", "acme"):
        records = export(path, party)
        assert [(m["text"], len(m["attachments"])) for m in records] == [
            ("contract, signed", 1)], party
    assert sorted(p.parent.parent.name for p in kept_files(tmp_path)) == [
        "acme.db.files", "agency.db.files"]


def kept_files(folder: Path) -> list[Path]:
    """The files kept in the SQLite parties' folders (beside their databases); what a
    write a crash cut off lies in ``.tmp`` until it is an hour old, and is no file."""
    return [p for p in folder.glob("*.db.files/**/*") if p.is_file() and ".tmp" not in p.parts]


async def test_a_25_mib_file_is_streamed_not_held(tmp_path: Path) -> None:
    """Relaying a 25 MiB file (in, to both stores, to the other room, downloaded) raises
    the daemon's peak RSS by well under its size: it is streamed, never whole in memory."""
    path, agency, acme = config_for(tmp_path)
    big = PeerFile("big.bin", "application/octet-stream", os.urandom(25 * 1024 * 1024))
    async with running(path, [agency, acme]) as daemon, aiohttp.ClientSession() as http:
        assert daemon.proc is not None
        async with Room(http, acme, "lobby").stream() as stream:
            await Room(http, agency, "lobby", token=TOKEN).post("warm-up", "alice")
            await stream.wait_for(1)
            before = peak_rss(daemon.proc.pid)
            status, answer = await post_files(http, Room(http, agency, "lobby").base,
                                              "the big one", "alice", [big], AUTH)
            assert status == 202, answer
            [got] = await received(http, Room(http, acme, "lobby").base,
                                   (await stream.wait_for(2))[1])
        assert got.data == big.data
        grew = peak_rss(daemon.proc.pid) - before
        assert grew < 10 * 1024 * 1024, f"peak RSS grew by {grew / 2**20:.1f} MiB"


def peak_rss(pid: int) -> int:
    """A process's peak resident set size so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) * 1024
