"""Files through the XMPP connector in the real ``roomlink`` process and a real Prosody:
out as uploads (XEP-0363) that clients show inline (XEP-0066), in from the links people
share; too big, broken and non-HTTP links; a delete after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from bridgekit import ROOM, bridge
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from xmppkit import BRIDGE_NICK, UPLOAD_LIMIT, Person, Prosody, download

from conformance import wait_until
from filekit import SAMPLES, PeerFile, post_files, received
from rlkit import free_port


async def test_files_out_show_inline_and_a_delete_after_a_restart_retracts_all(
        tmp_path: Path, prosody: Prosody) -> None:
    async with bridge(tmp_path, prosody) as b:
        sent = list(SAMPLES[:2])  # an image and a PDF
        status, answer = await post_files(b.api.session, b.api.base, "the plans", "bob", sent)
        assert status == 202, answer
        await b.wait_bodies(3)
        mine = [s for s in b.watcher.seen if s.nick == BRIDGE_NICK]
        text, *files = mine
        assert text.body == "<bob> the plans" and not text.oob
        # each file is a message whose body is the URL an OOB element names: what
        # Conversations, Dino and Gajim show as the file itself
        assert all(f.is_file and len(f.oob) == 1 for f in files), [f.xml for f in files]
        got = [await download(f.oob[0]) for f in files]
        assert [(g.name, g.type, g.data) for g in got] == [
            (s.name, s.type, s.data) for s in sent]
        await asyncio.sleep(1.0)  # the room's echo of them is not relayed back
        assert b.frames() == []

        assert b.daemon.terminate() == 0
        # shared while the bridge was stopped: read from the room's archive, fetched then
        alice = await Person.join(prosody, ROOM, "alice")
        url = await alice.upload("notes.txt", "text/plain", b"said while you were away")
        await alice.share("", [url])
        await b.daemon.start()
        await b.wait_in_room()
        [frame] = await b.wait_frames(1)
        assert (frame["author"]["name"], frame["text"]) == ("alice", "")
        [got] = await received(b.api.session, b.api.base, frame)
        assert (got.name, got.type, got.data) == ("notes.txt", "text/plain",
                                                  b"said while you were away")
        await b.api.delete(answer["id"], "bob")
        ids = {s.stanza_id for s in mine}
        await wait_until(lambda: {s.retracts for s in b.watcher.seen} >= ids, 30,
                         lambda: f"retractions of {ids}: {[s.retracts for s in b.watcher.seen]}")
        await alice.leave()


async def test_a_file_the_upload_service_refuses_goes_as_a_line(tmp_path: Path,
                                                                prosody: Prosody) -> None:
    # the bridge is told it may post 3 MB; the server takes 2 MB and refuses the slot
    async with bridge(tmp_path, prosody, {"max_file_bytes": 3_000_000}) as b:
        big = PeerFile("big.bin", "application/octet-stream", b"\x01" * (UPLOAD_LIMIT + 1000))
        status, answer = await post_files(b.api.session, b.api.base, "too big", "bob", [big])
        assert status == 202, answer
        [body] = await b.wait_bodies(1)
        assert body.startswith("<bob> too big\n[file: big.bin (application/octet-stream, "), body
        await asyncio.sleep(1.0)
        assert [s.body for s in b.watcher.seen if s.nick == BRIDGE_NICK] == [body]
        assert not any(s.oob for s in b.watcher.seen)


@contextlib.asynccontextmanager
async def web_server(files: dict[str, bytes], tls: Path | None = None) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving ``files`` by path (a page people link to);
    ``tls``: a folder for a throwaway self-signed certificate, and HTTPS."""
    async def serve(request: web.Request) -> web.StreamResponse:
        data = files.get(request.path)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    context = None
    if tls is not None:
        proc = await asyncio.create_subprocess_exec(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=127.0.0.1", "-keyout", str(tls / "web.key"), "-out", str(tls / "web.crt"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await proc.wait() == 0
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls / "web.crt", tls / "web.key")
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_shared_links_too_big_broken_or_not_http_still_relay_the_message(
        tmp_path: Path, prosody: Prosody) -> None:
    async with (bridge(tmp_path, prosody, {"max_file_bytes": 100_000}) as b,
                web_server({"/big/huge.bin": b"\x02" * 200_000,
                            "/ok/notes.txt": b"small and fine"}) as site):
        alice = await Person.join(prosody, ROOM, "alice")
        await alice.share("three links", [f"{site}/big/huge.bin", f"{site}/gone/lost.png",
                                          f"{site}/ok/notes.txt"])
        await alice.share("a local file", ["file:///etc/passwd"])
        first, second = await b.wait_frames(2)
        assert first["text"].startswith("three links\n"), first["text"]
        # the two files not kept are a line each, with why and the link
        assert "huge.bin" in first["text"] and "over the limit" in first["text"]
        assert "lost.png" in first["text"] and "HTTP 404" in first["text"]
        assert f"{site}/gone/lost.png" in first["text"]
        [kept] = first["attachments"]
        assert kept["name"] == "notes.txt"
        async with aiohttp.ClientSession() as http:
            [got] = await received(http, b.api.base, first)
        assert got.data == b"small and fine"
        # a file: URL is not a file to fetch: it stays text, and nothing is read
        assert second["text"] == "a local file\nfile:///etc/passwd", second
        assert not second.get("attachments")
        await alice.leave()


async def test_download_files_false_leaves_links_as_links(tmp_path: Path,
                                                          prosody: Prosody) -> None:
    async with (bridge(tmp_path, prosody, {"download_files": False}) as b,
                web_server({"/ok/notes.txt": b"never fetched"}) as site):
        alice = await Person.join(prosody, ROOM, "alice")
        await alice.share("", [f"{site}/ok/notes.txt"])
        [frame] = await b.wait_frames(1)
        assert not frame.get("attachments"), frame  # nothing fetched, nothing kept
        assert "notes.txt" in frame["text"] and f"{site}/ok/notes.txt" in frame["text"]
        await alice.leave()


async def test_an_encrypted_link_is_decrypted_and_one_that_does_not_decrypt_is_a_note(
        tmp_path: Path, prosody: Prosody) -> None:
    """aesgcm:// links (XEP-0454): the file at the https URL, decrypted with the key the
    link's fragment holds (the bridge's tls_verify is off for this self-signed server)."""
    plan = b"%PDF-1.4 the secret plan " + os.urandom(70_000)
    key, iv = AESGCM.generate_key(bit_length=256), os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plan, None)  # the ciphertext, then the 16-byte tag
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    async with (bridge(tmp_path, prosody) as b,
                web_server({"/s/secret plan.pdf": sealed, "/t/altered.pdf": tampered},
                           tls=tmp_path) as site):
        secret = (iv + key).hex()
        host = site.removeprefix("https://")
        alice = await Person.join(prosody, ROOM, "alice")
        await alice.share("sealed", [f"aesgcm://{host}/s/secret%20plan.pdf#{secret}",
                                     f"aesgcm://{host}/t/altered.pdf#{secret}"])
        [frame] = await b.wait_frames(1)
        [kept] = frame["attachments"]
        assert (kept["name"], kept["type"]) == ("secret plan.pdf", "application/pdf")
        [got] = await received(b.api.session, b.api.base, frame)
        assert got.data == plan
        assert "altered.pdf" in frame["text"] and "does not decrypt" in frame["text"]
        await alice.leave()
