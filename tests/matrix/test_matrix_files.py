"""Matrix files beyond the conformance kit, against a real Synapse (its upload limit is
2 MB here): an encrypted room's files both ways byte for byte, files over a limit (the
connector's, the homeserver's, one the homeserver refuses), hostile names and captions,
a deleted file message, and where the encryption keys live."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import nio
from mxpeer import MatrixPeer, fetch, file_kind
from synapsekit import Synapse, SyncProxy, register

import conformance
from conformance import PEER_CONNECTOR, PEER_PARTY, assert_same_files, wait_until
from filekit import HOSTILE_NAME, SAMPLES, PeerFile, clean_name_ok, post_files


def plain(canonical: str) -> str:
    """A frame's canonical text as its words: the escapes that keep markup text, gone."""
    return canonical.replace("\\", "")


def blob(name: str, size: int) -> PeerFile:
    return PeerFile(name, "application/octet-stream", random.Random(size).randbytes(size))


async def test_encrypted_room_files_both_ways_byte_for_byte(
        tmp_path: Path, http: aiohttp.ClientSession, synapse: Synapse, proxy: SyncProxy
) -> None:
    peer = MatrixPeer(http, synapse.url, proxy, tmp_path / "bot-keys")
    await peer.setup(encrypted=True)
    account = await register(http, synapse.url, "alice")
    await account.set_name("Alice Secret")
    await account.join(peer.room)
    (tmp_path / "alice-keys").mkdir()
    alice = nio.AsyncClient(synapse.url, account.user_id, device_id=account.device_id,
                            store_path=str(tmp_path / "alice-keys"),
                            config=nio.AsyncClientConfig(encryption_enabled=True,
                                                         store_sync_tokens=False))
    alice.restore_login(account.user_id, account.device_id, account.token)
    files_heard: list[dict[str, Any]] = []

    async def on_file(room: Any, event: Any) -> None:
        if event.sender == peer.bot.user_id:
            files_heard.append(event.source["content"])

    alice.add_event_callback(on_file, (nio.RoomEncryptedFile, nio.RoomEncryptedImage))
    syncing = asyncio.create_task(alice.sync_forever(timeout=1000, full_state=True))
    image, contract = SAMPLES[0], SAMPLES[1]
    try:
        async with conformance.harness(tmp_path, peer) as h:
            await peer.bot_joined()
            await wait_until(lambda: peer.room in alice.rooms, 30, lambda: "alice's sync")
            # Element's way: the file encrypted on the device, the key in the event
            up, secret = await alice.upload(lambda *_: image.data, content_type=image.type,
                                            filename=image.name, encrypt=True,
                                            filesize=len(image.data))
            assert isinstance(up, nio.UploadResponse), up
            sent = await alice.room_send(peer.room, "m.room.message", {
                "msgtype": "m.image", "body": "a secret picture", "filename": image.name,
                "info": {"mimetype": image.type, "size": len(image.data)},
                "file": {**(secret or {}), "url": up.content_uri}},
                ignore_unverified_devices=True)
            assert isinstance(sent, nio.RoomSendResponse), sent
            [frame] = await h.frames(1, timeout=60)
            assert (frame["text"], frame["author"]["name"]) == ("a secret picture",
                                                                "Alice Secret")
            assert_same_files(await h.api_files(frame), [image])  # decrypted, equal bytes
            # the other way: the bridge encrypts the file before the homeserver sees it
            status, answer = await post_files(h.api.session, h.api.base, "a secret contract",
                                              "bob", [contract], h.api.headers)
            assert status == 202, answer
            await wait_until(lambda: bool(files_heard), 60, lambda: "alice decrypting it")
            [content] = files_heard
            assert "url" not in content and content["body"] == contract.name
            assert_same_files([await fetch(account, content)], [contract])
            stored = await account.download(content["file"]["url"])
            assert len(stored) == len(contract.data) and stored != contract.data
            raw = await peer.owner.events(peer.room)
            by_bot = [e for e in raw if e["sender"] == peer.bot.user_id
                      and e["type"] != "m.room.member"]
            assert {e["type"] for e in by_bot} == {"m.room.encrypted"}
            assert "a secret contract" not in json.dumps(raw)
    finally:
        syncing.cancel()
        await asyncio.gather(syncing, return_exceptions=True)
        await alice.close()
        await peer.close()


async def test_files_over_the_connectors_limit_arrive_as_lines(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    matrix_room.options = {"max_file_bytes": 50_000}
    big = blob("big.bin", 80_000)
    async with conformance.harness(tmp_path, matrix_room) as h:
        alice = await matrix_room.person("Alice")
        await matrix_room.bot_joined()
        await alice.send(matrix_room.room_id, {
            "msgtype": "m.file", "body": "too big to keep", "filename": big.name,
            "url": await alice.upload(big.data, big.type, big.name),
            "info": {"mimetype": big.type, "size": len(big.data)}})
        [frame] = await h.frames(1)  # the message comes all the same, the file as a line
        assert plain(frame["text"]).startswith("too big to keep\n[file: big.bin ("), frame
        assert "over the limit" in frame["text"] and not frame.get("attachments")
        [record] = h.records(PEER_PARTY)
        [kept] = record["attachments"]
        assert kept["sha256"] is None and "over the limit" in kept["note"]
        status, answer = await post_files(h.api.session, h.api.base, "big from the web",
                                          "bob", [big], h.api.headers)
        assert status == 202, answer
        [post] = await h.posts(1)
        assert post.text.startswith("big from the web\n[file: big.bin (application/octet"), post
        await asyncio.sleep(1.0)  # no file event follows
        assert await matrix_room.files_of(post) == []


async def test_the_homeservers_upload_limit_applies_and_a_refusal_is_a_line(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    huge = blob("huge.bin", 2_500_000)  # Synapse takes 2 MB here
    async with conformance.harness(tmp_path, matrix_room) as h:
        # the limit the homeserver's media config gives: not even tried
        status, answer = await post_files(h.api.session, h.api.base, "first", "bob", [huge],
                                          h.api.headers)
        assert status == 202, answer
        [post] = await h.posts(1)
        assert post.text.startswith("first\n[file: huge.bin ("), post
        assert "files refused" not in h.daemon.log()
    # a limit set higher than the homeserver's: the upload is refused (413 M_TOO_LARGE)
    # and the text goes with the line, once, with nothing else before it
    matrix_room.options = {"max_file_bytes": 5_000_000}
    (tmp_path / "again").mkdir()
    async with conformance.harness(tmp_path / "again", matrix_room) as h:
        status, answer = await post_files(h.api.session, h.api.base, "second", "bob",
                                          [huge, SAMPLES[0]], h.api.headers)
        assert status == 202, answer
        _, post = await h.posts(2)
        assert post.text.startswith("second\n[file: huge.bin ("), post
        assert "[file: screenshot.png (image/png" in post.text
        assert "M_TOO_LARGE" in h.daemon.log()
        await asyncio.sleep(1.0)
        assert len(matrix_room.posts()) == 2 and await matrix_room.files_of(post) == []


async def test_hostile_names_captions_and_a_deleted_file_message(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    odd = PeerFile(HOSTILE_NAME, "application/octet-stream", b"MZ\x90\x00" * 100)
    caption = "<b>look</b> @room <script>alert(1)</script>"
    async with conformance.harness(tmp_path, matrix_room) as h:
        alice = await matrix_room.person("Alice")
        await matrix_room.bot_joined()
        url = await alice.upload(odd.data, odd.type, odd.name)
        # an older client: the body is the name; a newer one: a caption, and the filename
        await alice.send(matrix_room.room_id, {"msgtype": "m.file", "body": odd.name,
                                               "url": url})
        await alice.send(matrix_room.room_id, {"msgtype": "m.file", "body": caption,
                                               "filename": odd.name, "url": url})
        first, second = await h.frames(2)
        assert first["text"] == "" and plain(second["text"]) == caption  # text, inert
        for frame in (first, second):
            [att] = frame["attachments"]
            assert clean_name_ok(att["name"], odd.name), att
            assert_same_files(await h.api_files(frame), [odd])
        # the bridge's copy with two files is three events; a delete takes all of them
        status, answer = await post_files(h.api.session, h.api.base, "two files", "bob",
                                          [SAMPLES[0], odd], h.api.headers)
        assert status == 202, answer
        [post] = await h.posts(1)
        await wait_until(lambda: len(files_shown(matrix_room, post)) == 2, 30,
                         lambda: "the two file events")
        names = [c["body"] for c in files_shown(matrix_room, post)]
        assert names[0] == SAMPLES[0].name and clean_name_ok(names[1], odd.name), names
        assert [c["msgtype"] for c in files_shown(matrix_room, post)] == [
            file_kind(SAMPLES[0].type), "m.file"]
        await h.api.delete(answer["id"], "bob")
        bot_events = {e["event_id"] for e in matrix_room.timeline
                      if e.get("sender") == matrix_room.bot.user_id
                      and e["type"] == "m.room.message"}

        def redacted() -> set[str]:
            return {e.get("redacts") or e["content"].get("redacts")
                    for e in matrix_room.timeline if e["type"] == "m.room.redaction"}

        await wait_until(lambda: bot_events <= redacted(), 30,
                         lambda: f"{bot_events - redacted()} still shown")
        assert len(bot_events) == 3


def files_shown(peer: MatrixPeer, post: conformance.Post) -> list[dict[str, Any]]:
    peer.posts()
    return peer.with_post.get(post.native_id, [])


def key_files(folder: Path) -> list[Path]:
    return list(folder.glob("*.db"))


async def test_encryption_keys_live_beside_the_store(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    options = matrix_room.connector_options()
    del options["key_store"]  # the default
    matrix_room.connector_options = lambda: options  # type: ignore[method-assign]
    async with conformance.harness(tmp_path, matrix_room) as h:
        await matrix_room.say("hello", "Alice")
        await h.frames(1)
    assert key_files(tmp_path / f"{PEER_PARTY}.db.state" / PEER_CONNECTOR / "keys")


async def test_a_file_that_fails_its_hash_or_its_download_goes_as_a_note(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    data = random.Random(7).randbytes(5000)
    async with conformance.harness(tmp_path, matrix_room) as h:
        alice = await matrix_room.person("Alice")
        await matrix_room.bot_joined()
        # an encrypted file whose ciphertext is not the one its hash names (tampered
        # with on the homeserver): decrypted, checked, and kept nowhere
        forged = {"v": "v2", "url": await alice.upload(data, "application/octet-stream",
                                                        "x.bin"),
                  "key": {"kty": "oct", "alg": "A256CTR", "ext": True,
                          "key_ops": ["encrypt", "decrypt"], "k": "A" * 43},
                  "iv": "AAAAAAAAAAAAAAAAAAAAAA", "hashes": {"sha256": "B" * 43}}
        await alice.send(matrix_room.room_id, {"msgtype": "m.file", "body": "forged",
                                               "filename": "report.pdf", "file": forged})
        # a file the homeserver does not have
        await alice.send(matrix_room.room_id, {
            "msgtype": "m.file", "body": "gone", "filename": "gone.pdf",
            "url": "mxc://localhost/NoSuchMediaAtAll"})
        first, second = await h.frames(2)
        for frame, word in ((first, "forged"), (second, "gone")):
            assert plain(frame["text"]).startswith(f"{word}\n[file: "), frame
            assert not frame.get("attachments")
        assert "SHA-256" in plain(first["text"]) and "HTTP 404" in plain(second["text"])
        for record in h.records(PEER_PARTY):
            [att] = record["attachments"]
            assert att["sha256"] is None and att["note"], att
