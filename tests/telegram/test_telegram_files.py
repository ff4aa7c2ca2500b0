"""Files between a Telegram group and an API room, through the real roomlink process and
the Bot API test server: photos and documents both ways with their bytes, captions, a
hostile name, Telegram's size limits, a refusal, caption edits and a kill -9 mid-download."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
from tgkit import GROUP, bot_posts, config, env, media, shown, wait_until

from filekit import HOSTILE_NAME, PeerFile, clean_name_ok, pdf, png, post_files, received
from rlkit import Room, export, running

MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_photo_and_document_both_ways_with_equal_bytes(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    picture, contract = png(320, 200, seed=7), pdf(300_000)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            # in: a photo (its largest size) and a document, each with its caption
            photo = tg.say(GROUP, alice, None, caption="the mock-up", photo=tg.photo(picture))
            tg.say(GROUP, alice, None, caption="signed",
                   document=tg.document(contract, "contract.pdf", "application/pdf"))
            first, second = await stream.wait_for(2)
            assert (first["text"], second["text"]) == ("the mock-up", "signed")
            [got_photo] = await received(http, api.base, first, api.headers)
            [got_pdf] = await received(http, api.base, second, api.headers)
            assert got_photo.data == picture and got_photo.type == "image/jpeg"
            assert got_photo.name.startswith("photo-") and got_photo.name.endswith(".jpg")
            assert (got_pdf.name, got_pdf.type, got_pdf.data) == ("contract.pdf",
                                                                  "application/pdf", contract)
            # out: an image as a photo, a PDF as a document, bytes as sent; a reply points
            # at the original's copy
            status, answer = await post_files(
                http, api.base, "here is **mine**", "bob",
                [PeerFile("screen.png", "image/png", picture)], api.headers,
                reply_to=first["id"])
            assert status == 202, answer
            [sent_photo] = await bot_posts(tg, GROUP, 1)
            status, _ = await post_files(http, api.base, "", "bob",
                                         [PeerFile("offer.pdf", "application/pdf", contract)],
                                         api.headers)
            assert status == 202
            _, sent_pdf = await bot_posts(tg, GROUP, 2)
        assert daemon.terminate() == 0
    assert tg.file_of(sent_photo) == picture and "photo" in sent_photo
    assert shown(sent_photo) == ("bob", "here is mine")
    assert [e["type"] for e in sent_photo["caption_entities"]] == ["bold", "bold"]
    assert sent_photo["reply_to_message"]["message_id"] == photo
    assert tg.file_of(sent_pdf) == contract
    assert sent_pdf["document"]["file_name"] == "offer.pdf"
    assert sent_pdf["document"]["mime_type"] == "application/pdf"
    assert shown(sent_pdf) == ("bob", "")  # no text: the author alone, no stray colon
    assert sent_pdf["caption"] == "bob"
    # both parties keep all four files, and their records verify
    for party in ("agency", "acme"):
        records = export(path, party, env=env(tg))
        assert [[a["sha256"] for a in r["attachments"]] for r in records] == [
            [sha(picture)], [sha(contract)], [sha(picture)], [sha(contract)]]


async def test_a_long_text_goes_first_and_an_edit_changes_the_caption(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    long_text = " ".join(f"word{i}" for i in range(300))  # about 2,400 characters
    assert len(long_text) > 1024
    picture = png(64, 64)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        status, answer = await post_files(http, api.base, long_text, "bob",
                                          [PeerFile("a.png", "image/png", picture)],
                                          api.headers)
        assert status == 202, answer
        text_post, file_post = await bot_posts(tg, GROUP, 2)
        assert shown(text_post) == ("bob", long_text)  # the whole text, as a message
        assert shown(file_post) == ("bob", "") and tg.file_of(file_post) == picture
        # a short one: one message, the file with the text as its caption
        status, answer = await post_files(http, api.base, "short <b>caption</b>", "carol",
                                          [PeerFile("b.png", "image/png", picture)],
                                          api.headers)
        said = answer["id"]
        *_, captioned = await bot_posts(tg, GROUP, 3)
        assert shown(captioned) == ("carol", "short <b>caption</b>")
        assert [e["type"] for e in captioned["caption_entities"]] == ["bold"]  # literal <b>
        assert daemon.terminate() == 0
        await daemon.start()  # only the store knows it was a file message now
        async with http.patch(f"{api.base}/messages/{said}", headers=api.headers,
                              json={"text": "better caption", "author": "carol"}) as resp:
            assert resp.status == 202, await resp.text()
        await wait_until(lambda: tg.chats[GROUP].messages[captioned["message_id"]]
                         .get("edit_date") is not None, what="the caption edit")
        now = tg.chats[GROUP].messages[captioned["message_id"]]
        assert shown(now) == ("carol", "better caption") and tg.file_of(now) == picture
        assert tg.sent_calls("editMessageText") == []
        # an edit longer than a caption keeps the file and says where the caption ends
        async with http.patch(f"{api.base}/messages/{said}", headers=api.headers,
                              json={"text": long_text, "author": "carol"}) as resp:
            assert resp.status == 202
        await wait_until(lambda: "ends here" in tg.chats[GROUP].messages[
            captioned["message_id"]].get("caption", ""), what="the long edit")
        assert len(tg.chats[GROUP].messages[captioned["message_id"]]["caption"]) <= 1024
        assert len(tg.bot_messages(GROUP)) == 3  # changed in place, never posted again
        # deleting the first message takes its file message with it
        async with http.delete(f"{api.base}/messages/{(await _first_id(path, tg))}",
                               headers=api.headers, json={"author": "bob"}) as resp:
            assert resp.status == 202
        await wait_until(lambda: {text_post["message_id"], file_post["message_id"]}
                         <= tg.chats[GROUP].deleted, what="both messages deleted")


async def _first_id(path: Path, tg: Any) -> str:
    return str(export(path, "acme", env=env(tg))[0]["id"])


async def test_hostile_names_are_cleaned_both_ways(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    data = bytes(range(256)) * 10
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            tg.say(GROUP, alice, "from telegram",
                   document=tg.document(data, "../../etc/\u202epasswd\x07.txt", "text/plain"))
            [frame] = await stream.wait_for(1)
            [got] = await received(http, api.base, frame, api.headers)
            assert clean_name_ok(got.name, "../../etc/\u202epasswd\x07.txt") and got.data == data
            status, _ = await post_files(http, api.base, "from the web", "bob",
                                         [PeerFile(HOSTILE_NAME, "application/octet-stream",
                                                   data)], api.headers)
            assert status == 202
            [post] = await bot_posts(tg, GROUP, 1)
    name = post["document"]["file_name"]
    assert clean_name_ok(name, HOSTILE_NAME) and tg.file_of(post) == data


async def test_files_over_20_mb_arrive_as_a_note_and_the_chat_goes_on(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            # Telegram says the size: the bridge does not even ask for it
            tg.say(GROUP, alice, "the raw footage", video={**tg.document(
                b"not fetched", "footage.mp4", "video/mp4", size=25 * MB, kind="video"),
                "width": 1920, "height": 1080, "duration": 600})
            # no size in the update: getFile answers 400 "file is too big"
            tg.say(GROUP, alice, "the archive", document=tg.document(
                b"not fetched either", "all.zip", "application/zip", size=21 * MB,
                with_size=False))
            tg.break_downloads = True  # and a download that breaks off half-way
            tg.say(GROUP, alice, "the log", document=tg.document(b"x" * 200_000, "app.log",
                                                                   "text/plain"))
            tg.say(GROUP, alice, "and the chat goes on")
            frames = await stream.wait_for(4)
    assert [f["text"].split("\n")[0] for f in frames] == [
        "the raw footage", "the archive", "the log", "and the chat goes on"]
    assert "20 MB download limit" in frames[0]["text"]  # the API room reads the note
    assert tg.downloads == ["documents/file_2.log"]  # only the log was ever downloaded
    records = export(path, "agency", env=env(tg))
    footage, archive, log = (r["attachments"][0] for r in records[:3])
    assert footage["name"] == "footage.mp4" and footage["size"] == 25 * MB
    assert "20 MB download limit" in footage["note"] and footage.get("sha256") is None
    assert "20 MB download limit" in archive["note"] and archive.get("sha256") is None
    assert "not kept" in log["note"] and log.get("sha256") is None


async def test_a_refused_upload_arrives_as_text_with_a_file_line(
    tmp_path: Path, tg: Any
) -> None:
    tg.chats[GROUP].no_rights = {"documents"}  # the group lets members send no files
    path, port = config(tmp_path, tg)
    # a PNG whose sides add up to over 10,000: Telegram refuses it as a photo
    huge_side = media.png(9000, 1500, b"pixels" * 1000)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        status, _ = await post_files(http, api.base, "the spec", "bob",
                                     [PeerFile("spec.pdf", "application/pdf", pdf(1000))],
                                     api.headers)
        assert status == 202
        [post] = await bot_posts(tg, GROUP, 1)
        assert "photo" not in post and "document" not in post
        assert shown(post)[0] == "bob"
        assert shown(post)[1].startswith("the spec\n[file: spec.pdf (application/pdf, ")
        tg.chats[GROUP].no_rights = set()
        status, _ = await post_files(http, api.base, "panorama", "bob",
                                     [PeerFile("pano.png", "image/png", huge_side)],
                                     api.headers)
        assert status == 202
        _, pano = await bot_posts(tg, GROUP, 2)
        assert pano.get("document", {}).get("file_name") == "pano.png", (pano, tg.calls[-4:])
        assert tg.file_of(pano) == huge_side
        assert [m for m, _ in tg.calls if m in ("sendphoto", "senddocument")] == [
            "senddocument", "sendphoto", "senddocument"]
        assert daemon.terminate() == 0
    assert "files refused" in daemon.log()


async def test_kill_during_a_download_keeps_the_message_whole_or_not_at_all(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    data = pdf(2 * MB)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            tg.download_gate = asyncio.Event()  # the download stops half-way
            tg.say(GROUP, alice, "the big one", document=tg.document(data, "big.pdf",
                                                                     "application/pdf"))
            await wait_until(lambda: tg.downloads != [], what="the download to begin")
            await asyncio.sleep(0.5)
            daemon.kill()
            for party in ("agency", "acme"):  # nothing of it kept: not the message either
                assert export(path, party, env=env(tg)) == []
            assert len(tg.updates) == 1  # and Telegram still has the update
            tg.download_gate.set()
            await daemon.start()
            [frame] = await stream.wait_for(1, timeout=60)
            await asyncio.sleep(1.5)  # no second copy
            assert len(stream.frames) == 1
            [got] = await received(http, api.base, frame, api.headers)
            assert got.data == data
        assert daemon.terminate() == 0
    for party in ("agency", "acme"):
        records = export(path, party, env=env(tg))
        assert [(r["text"], r["attachments"][0]["sha256"]) for r in records] == [
            ("the big one", sha(data))]
