"""Files through Slack and back, with the real roomlink process and the local Slack server:
downloaded with the bot token and kept by every party, posted with Slack's external
upload (in the right thread, the author named in the comment), and what cannot travel
goes as a note or a [file: ...] line, never silently lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from slackkit import (
    ALICE,
    BOB,
    BOT_TOKEN,
    LOBBY,
    PRIVATE,
    Download,
    SlackServer,
    bridge_config,
    bridged,
    sha256,
    wait_delivered,
)

from filekit import HOSTILE_NAME, SAMPLES, clean_name_ok, pdf, post_files
from rlkit import Daemon, Room, export, run_cli

IMAGE, PDF, HOSTILE = SAMPLES


def shared(slack: SlackServer, cid: str) -> list[dict[str, Any]]:
    """The bridge's posts in ``cid`` that share files."""
    return [m for m in slack.history(cid) if m.get("files")]


async def test_files_go_from_channel_to_channel_with_equal_bytes_in_threads_and_are_kept(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack, extra_rooms=["#secret"]) as (daemon, _room, stream):
        root = slack.upload(LOBBY, ALICE, [(f.name, f.data, f.type) for f in SAMPLES],
                            "the mock-ups")
        [frame] = await stream.wait_for(1)
        assert frame["text"] == "the mock-ups"
        [record] = export(daemon.config, "acme", "p")
        assert [a["sha256"] for a in record["attachments"]] == [f.sha256 for f in SAMPLES]
        # downloaded with the bot token, each once
        assert sorted(token for _, token in slack.downloaded) == [BOT_TOKEN] * 3
        [post] = await slack.wait_posts(PRIVATE, 1)
        assert post["subtype"] == "file_share" and post["user"] == "U0BRIDGE"
        assert post["text"] == "*Alice A.*: the mock-ups"  # an upload has no username
        got = slack.file_bytes(post)
        assert [data for _, _, data in got] == [f.data for f in SAMPLES]
        assert [name for name, _, _ in got][:2] == [IMAGE.name, PDF.name]
        assert [mime for _, mime, _ in got][:2] == [IMAGE.type, PDF.type]
        assert clean_name_ok(got[2][0], HOSTILE_NAME), got[2][0]
        calls = slack.method_calls("files.completeUploadExternal")
        assert [c["channel_id"] for c in calls] == [PRIVATE] and "thread_ts" not in calls[0]

        # a file in reply, from the other channel: it lands in the first one's thread
        await wait_delivered(tmp_path / "agency.db")  # the copy's ts is known to the bridge
        slack.upload(PRIVATE, BOB, [("answer.png", IMAGE.data, "image/png")], "see this",
                     thread_ts=post["ts"])
        await slack.wait(lambda: len(shared(slack, LOBBY)) == 1, what="the reply's files")
        [reply] = shared(slack, LOBBY)
        assert reply["thread_ts"] == root
        assert reply["text"] == "*Bob Builder*: see this"
        assert slack.file_bytes(reply) == [("answer.png", "image/png", IMAGE.data)]
        frames = await stream.wait_for(2)
        assert frames[1]["reply_to"] == frames[0]["id"]

        # edits of a message with files reach the bridge's copy, which it knows by its ts
        slack.edit(LOBBY, root, "the final mock-ups")
        await slack.wait(lambda: slack.history(PRIVATE)[0]["text"].endswith("final mock-ups"),
                         what="the edit of the copy")
        await asyncio.sleep(1.0)  # the bridge's own shares did not come back
        assert len(stream.frames) == 3 and len(shared(slack, PRIVATE)) == 1
        assert daemon.terminate() == 0, daemon.log()
    for party in ("agency", "acme"):
        records = export(daemon.config, party, "p")
        assert [[a["sha256"] for a in m.get("attachments", [])] for m in records[:2]] == [
            [f.sha256 for f in SAMPLES], [IMAGE.sha256]]
        verified = run_cli("history", "verify", "-c", str(daemon.config), "--party", party)
        assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_file_that_cannot_be_downloaded_or_kept_goes_as_a_note(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack, max_file_bytes=50_000) as (daemon, _room, stream):
        ok, gone, cut, big = (slack.add_file(ALICE, name, data) for name, data in (
            ("ok.png", IMAGE.data[:20_000]), ("gone.pdf", b"%PDF gone"),
            ("cut.pdf", PDF.data[:40_000]), ("big.pdf", PDF.data)))
        slack.downloads[gone["id"]] = Download(status=404)
        slack.downloads[cut["id"]] = Download(first=10_000, truncate=True)
        elsewhere = {**ok, "id": "F0ELSEWHERE", "name": "elsewhere.png",
                     "url_private_download": "https://files.example/elsewhere.png",
                     "permalink": "https://files.example/elsewhere"}
        # a Slack Connect share names only the file: the rest is asked of files.info
        other = slack.add_file(BOB, "shared.pdf", b"%PDF shared")
        connect = {"id": other["id"], "mode": "file_access",
                   "file_access": "check_file_info", "created": 0, "timestamp": 0, "user": ""}
        ts = slack.say(LOBBY, ALICE, "six files",
                       files=[ok, gone, cut, big, elsewhere, connect])
        [frame] = await stream.wait_for(1, timeout=30)
        assert frame["text"].startswith("six files")
        [record] = export(daemon.config, "acme", "p")
        kept, *notes, shared_file = record["attachments"]
        assert (kept["name"], kept["sha256"]) == ("ok.png", sha256(IMAGE.data[:20_000]))
        assert (shared_file["name"], shared_file["sha256"]) == ("shared.pdf",
                                                                sha256(b"%PDF shared"))
        assert [(a["name"], a.get("sha256")) for a in notes] == [
            ("gone.pdf", None), ("cut.pdf", None), ("big.pdf", None), ("elsewhere.png", None)]
        reasons = [a["note"] for a in notes]
        assert "HTTP 404" in reasons[0]
        assert "not kept" in reasons[1] and "broke off" in reasons[1]
        assert "limit" in reasons[2]
        assert "Slack's own host" in reasons[3]
        await slack.wait(lambda: slack.is_acked(ts), what="the ack")  # the room goes on
        # the bot token went to the Slack server only, never to another host
        assert all(token == BOT_TOKEN for _, token in slack.downloaded)
        assert daemon.terminate() == 0, daemon.log()


async def test_an_upload_slack_refuses_goes_as_text_with_a_file_line(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack, extra_rooms=["#secret"]) as (daemon, _room, stream):
        slack.max_upload = 30_000  # the workspace restricts large files
        slack.fail("files.getUploadURLExternal", "ratelimited", status=429, retry_after=1)
        slack.upload(LOBBY, ALICE, [("contract.pdf", PDF.data, "application/pdf")],
                     "the contract")
        [post] = await slack.wait_posts(PRIVATE, 1, timeout=40)
        assert "files" not in post and post["username"] == "Alice A."
        assert "the contract" in post["text"]
        assert "[file: contract.pdf (application/pdf, " in post["text"], post["text"]
        assert slack.method_calls("files.completeUploadExternal") == []
        # the upload service failing again and again: the same
        slack.max_upload = 10 ** 9
        slack.upload_failures = [500, 503, 500]
        slack.upload(LOBBY, BOB, [("small.png", IMAGE.data[:5000], "image/png")], "small")
        posts = await slack.wait_posts(PRIVATE, 2, timeout=40)
        assert "files" not in posts[1] and "[file: small.png (image/png, " in posts[1]["text"]
        assert len([c for c, _ in slack.calls if c == "upload"]) == 3
        # a 429 from the upload service is waited out: the file still goes as a file
        slack.upload_failures = [429]
        slack.upload(LOBBY, BOB, [("later.png", IMAGE.data[:5000], "image/png")], "later")
        posts = await slack.wait_posts(PRIVATE, 3, timeout=40)
        assert slack.file_bytes(posts[2]) == [("later.png", "image/png", IMAGE.data[:5000])]
        await stream.wait_for(3)
        assert daemon.terminate() == 0, daemon.log()


async def test_files_from_the_api_are_edited_and_deleted_on_slack(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack) as (daemon, room, _stream):
        status, answer = await post_files(room.session, room.base, "the invoice", "carol",
                                          [PDF], room.headers)
        assert status == 202, answer
        [post] = await slack.wait_posts(LOBBY, 1)
        assert post["text"] == "*carol*: the invoice"
        assert slack.file_bytes(post) == [(PDF.name, PDF.type, PDF.data)]
        await room.post("thanks", "dave", reply_to=answer["id"])  # a reply: in its thread
        posts = await slack.wait_posts(LOBBY, 2)
        assert posts[1]["thread_ts"] == post["ts"]
        await room.edit(answer["id"], "the corrected invoice", "carol")
        await slack.wait(lambda: slack.history(LOBBY)[0]["text"]
                         == "*carol*: the corrected invoice", what="the edit")
        await room.delete(answer["id"], "carol")
        await slack.wait(lambda: slack.history(LOBBY)[0].get("_deleted"), what="the delete")

        # Slack shares the next one too late to say its message: deleting it then
        # deletes its files
        slack.share_delay = 8.0
        status, answer = await post_files(room.session, room.base, "", "carol", [IMAGE],
                                          room.headers)
        assert status == 202, answer
        await slack.wait(lambda: len(slack.method_calls("files.completeUploadExternal")) == 2,
                         what="the second upload")
        fid = slack.method_calls("files.completeUploadExternal")[1]["files"]
        await room.delete(answer["id"], "carol")
        await slack.wait(lambda: slack.method_calls("files.delete"), timeout=30,
                         what="files.delete")
        assert slack.method_calls("files.delete")[0]["file"] in fid
        assert daemon.terminate() == 0, daemon.log()


async def test_kill_9_while_a_file_downloads_leaves_nothing_then_the_whole_message(
        tmp_path: Path, slack: SlackServer) -> None:
    path, port = bridge_config(tmp_path, slack)
    daemon = Daemon(path, [port])
    big = pdf(600_000)
    gate = asyncio.Event()
    await daemon.start()
    try:
        await slack.wait(lambda: slack.connections > 0, what="a Socket Mode connection")
        ts = slack.upload(LOBBY, ALICE, [("contract.pdf", big, "application/pdf")],
                          "signed")
        fid = slack.channels[LOBBY].messages[-1]["files"][0]["id"]
        slack.downloads[fid] = Download(first=300_000, gate=gate)
        await slack.wait(lambda: slack.downloaded, what="the download to start")
        await asyncio.sleep(1.0)
        assert not slack.is_acked(ts)
        daemon.kill()
        for party in ("agency", "acme"):  # nothing of it kept
            assert export(path, party, "p") == []
        gate.set()
        del slack.downloads[fid]
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            room = Room(http, port, "lobby")
            async with room.stream() as stream:
                [frame] = await stream.wait_for(1, timeout=60)
                await slack.wait(lambda: slack.is_acked(ts), what="the ack after the restart")
                await asyncio.sleep(1.0)
                assert len(stream.frames) == 1 and frame["text"] == "signed"
        for party in ("agency", "acme"):
            [record] = export(path, party, "p")
            assert (record["text"], record["attachments"][0]["sha256"]) == ("signed",
                                                                            sha256(big))
    finally:
        daemon.cleanup()
