"""Files through email (issue 21): the real roomlink process, a real Dovecot and a real
SMTP server, an API room on the other side of the pipe.

In: an inline image, a hostile file name, a part with broken base64, one whose declared
size lies and one without a name, all in one mail, then the next mail. Out: files over
``max_attachment_bytes`` go as lines with links, the rest attached, no name able to add a
header. A ``kill -9`` while a mail's file is being stored leaves it whole, once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from mailpeer import BRIDGE, MailServer, new_mail
from test_email_conformance import assert_headers_intact, attached
from test_email_relay import ALICE, ROOM, plain

from filekit import HOSTILE_NAME, SAMPLES, PeerFile, clean_name_ok, pdf, png, post_files, received
from rlkit import Daemon, Room, Stream, export, free_port, run_cli, write_config

PARTIES = ("agency", "acme")


@contextlib.asynccontextmanager
async def bridge(tmp_path: Path, server: MailServer, **options: Any
                 ) -> AsyncIterator[tuple[Daemon, Room, Stream, int]]:
    """The mail room (party acme, whose admin server answers its files_url) piped to an
    API room (party agency)."""
    port, admin = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {
            "agency": {"store": f"sqlite:///{tmp_path}/agency.db"},
            "acme": {"store": f"sqlite:///{tmp_path}/acme.db",
                     "files_url": f"http://127.0.0.1:{admin}/files"}},
        "connectors": {
            "mail": {"party": "acme", "type": "email", **server.options(**options)},
            "web": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {"deal": {"rooms": [{"connector": "mail", "room": ROOM},
                                     {"connector": "web", "room": "lobby"}]}},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": "admin-token"},
    })
    daemon = Daemon(path, [port, admin])
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Room(http, port, "lobby")
            async with api.stream() as stream:
                yield daemon, api, stream, admin
    finally:
        daemon.cleanup()


def verify(daemon: Daemon) -> None:
    for party in PARTIES:
        done = run_cli("history", "verify", "-c", str(daemon.config), "--party", party)
        assert done.returncode == 0, done.stdout + done.stderr


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


IMAGE = PeerFile("image-1.png", "image/png", png(64, 48, seed=7))
HOSTILE = PeerFile(HOSTILE_NAME + "\r\nBcc: eve@evil.example", "application/octet-stream",
                   bytes(range(256)) * 8)
NAMELESS = PeerFile("attachment-5.bin", "application/octet-stream", b"\x00\x01 no name")


def awkward_mail(message_id: str) -> bytes:
    """An HTML mail showing an inline image, with a file named to climb out of a folder,
    turn around and add a header (RFC 2231, CR/LF encoded), a PDF whose base64 is
    broken, a text file declaring 5 bytes for many more, and a file without a name."""
    hostile = "".join(f"%{b:02X}" for b in HOSTILE.name.encode())
    return f"""\
From: Alice <{ALICE}>
To: {BRIDGE}
Subject: files
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/related; boundary="inner"

--inner
Content-Type: text/html; charset=utf-8

<p>see the picture <img src="cid:pic@test.local"></p>
--inner
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <pic@test.local>
Content-Disposition: inline

{b64(IMAGE.data)}--inner--
--outer
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename*=utf-8''{hostile}

{b64(HOSTILE.data)}--outer
Content-Type: application/pdf
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="broken.pdf"

JVBERi0xLjQK!!!bad*base64@@@JVBER
--outer
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment; filename="notes.txt"; size=5

this is many more than five bytes
--outer
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

{b64(NAMELESS.data)}--outer--
""".replace("\n", "\r\n").encode()


async def test_inline_image_hostile_name_broken_parts_and_the_next_mail(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server) as (daemon, api, stream, _):
        message_id = f"<{uuid.uuid4().hex}@test.local>"
        await mail_server.send(awkward_mail(message_id), ALICE, [BRIDGE])
        await mail_server.send(new_mail(ALICE, "and the next mail", "Alice"))
        first, second = await stream.wait_for(2, timeout=30)
        assert second["text"] == "and the next mail"
        # the kept files reach the API room with their bytes; the others as a line each
        # with the reason, nothing dropped
        got = await received(api.session, api.base, first)
        assert [(f.type, f.data) for f in got] == [
            (f.type, f.data) for f in (IMAGE, HOSTILE, NAMELESS)]
        assert got[0].name == IMAGE.name and got[2].name == NAMELESS.name
        assert clean_name_ok(got[1].name, HOSTILE_NAME) and "Bcc" in got[1].name
        text = first["text"]
        assert text.startswith("see the picture")
        assert "broken.pdf (application/pdf, size unknown)" in text and "base64" in text
        assert "notes.txt (text/plain, " in text and "5 bytes declared" in text
        for party in PARTIES:
            records = export(daemon.config, party, "deal")
            assert [m["text"] for m in records][1:] == ["and the next mail"]
            kept = [a for a in records[0]["attachments"] if a.get("sha256")]
            assert [a["sha256"] for a in kept] == [
                hashlib.sha256(f.data).hexdigest() for f in (IMAGE, HOSTILE, NAMELESS)]
            notes = [a for a in records[0]["attachments"] if a.get("note")]
            assert [a["name"] for a in notes] == ["broken.pdf", "notes.txt"]
        verify(daemon)
        assert mail_server.flags("bridge") == ["S", "S"]  # both read; the mailbox moves on
        assert daemon.terminate() == 0, daemon.log()


async def test_files_over_max_attachment_bytes_go_as_links(
    tmp_path: Path, mail_server: MailServer
) -> None:
    image, contract, odd = SAMPLES  # about 57 KiB, 98 KiB and 16 KiB
    # beyond ASCII (RFC 2231) with quotes and a parameter of its own: still one name
    injector = PeerFile('счёт"; filename="evil.exe', "text/plain", b"plain text\n")
    big = PeerFile("big.pdf", "application/pdf", pdf(120_000))
    async with bridge(tmp_path, mail_server, max_attachment_bytes=100_000) as (
            daemon, api, _, admin):
        status, answer = await post_files(api.session, api.base, "the files", "bob",
                                          [image, contract, odd, injector, big])
        assert status == 202, answer
        [mail] = await mail_server.wait_mails("alice", 1)
        assert_headers_intact(mail, tuple(ROOM.split(", ")[::-1]))
        assert mail.get_all("Bcc") is None
        # in order, what fits the 100,000 bytes: the image, the odd name, the text file
        got = attached(mail)
        assert [(f.type, f.data) for f in got] == [
            (f.type, f.data) for f in (image, odd, injector)]
        assert got[0].name == image.name and clean_name_ok(got[1].name, odd.name)
        assert got[2].name == injector.name
        # the others: a line each with the link the acme party's admin server answers
        lines = plain(mail).split("\n")
        assert lines[0] == "the files"
        assert lines[1].startswith("[file: contract.pdf (application/pdf, ")
        assert lines[2].startswith("[file: big.pdf (application/pdf, 117.")
        async with aiohttp.ClientSession() as http:
            for line, f in zip(lines[1:], (contract, big), strict=True):
                link = line.rsplit(" ", 1)[1]
                assert link.startswith(f"http://127.0.0.1:{admin}/files/"), link
                async with http.get(link) as resp:
                    assert (resp.status, await resp.read()) == (200, f.data)
        assert daemon.terminate() == 0, daemon.log()


async def test_kill_while_a_mails_file_is_stored_keeps_it_whole_once(
    tmp_path: Path, mail_server: MailServer
) -> None:
    data = pdf(6_000_000)
    scratch = [tmp_path / f"{p}.db.files" / ".tmp" for p in PARTIES]
    async with bridge(tmp_path, mail_server) as (daemon, api, stream, _):
        mail = new_mail(ALICE, "the big contract", "Alice")
        mail.add_attachment(data, maintype="application", subtype="pdf",
                            filename="contract.pdf")
        await mail_server.send(mail)
        deadline = time.monotonic() + 30
        while not any(d.is_dir() and any(d.iterdir()) for d in scratch):
            assert time.monotonic() < deadline, "the file never started to be stored"
            await asyncio.sleep(0.001)
        daemon.kill()  # in the middle of writing the file
        await daemon.start()
        await stream.wait_for(1, timeout=60)
        await asyncio.sleep(1.5)
        assert {f["id"] for f in stream.frames} == {stream.frames[0]["id"]}
        assert [(f.name, f.data) for f in await received(api.session, api.base,
                                                         stream.frames[0])] == [
            ("contract.pdf", data)]
        for party in PARTIES:
            [record] = export(daemon.config, party, "deal")
            assert record["text"] == "the big contract"
            assert [a["sha256"] for a in record["attachments"]] == [
                hashlib.sha256(data).hexdigest()]
        verify(daemon)
        assert daemon.terminate() == 0, daemon.log()


async def test_a_batch_is_mailed_early_rather_than_pass_max_attachment_bytes(
    tmp_path: Path, mail_server: MailServer
) -> None:
    one, two, three = (PeerFile(f"{name}.bin", "application/octet-stream",
                                random.Random(size).randbytes(size))
                       for name, size in (("one", 30_000), ("two", 30_000), ("three", 50_000)))
    async with bridge(tmp_path, mail_server, batch_seconds=3,
                      max_attachment_bytes=100_000) as (daemon, api, _, _):
        for text, f in (("first", one), ("second", two), ("third", three)):
            status, answer = await post_files(api.session, api.base, text, "bob", [f])
            assert status == 202, answer
        first, second = await mail_server.wait_mails("alice", 2, timeout=30)
        # the third file would have made the batch's mail 110,000 bytes: it went without
        assert plain(first).split("\n\n") == ["first", "second"]
        assert [(f.name, f.data) for f in attached(first)] == [
            (f.name, f.data) for f in (one, two)]
        assert plain(second) == "third"
        assert [(f.name, f.data) for f in attached(second)] == [(three.name, three.data)]
        await asyncio.sleep(4)
        assert len(mail_server.mails("alice")) == 2
        assert daemon.terminate() == 0, daemon.log()
