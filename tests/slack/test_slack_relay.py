"""Slack <-> API through the real roomlink process and the local Slack server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from slackkit import (
    ALICE,
    BOB,
    BOT_ID,
    BOT_USER,
    LOBBY,
    OTHER,
    PRIVATE,
    SlackServer,
    bridge_config,
    bridged,
    pings,
    sha256,
)

from rlkit import Room, export, running


async def test_slack_channel_and_api_room_talk_both_ways(tmp_path: Path,
                                                         slack: SlackServer) -> None:
    async with bridged(tmp_path, slack) as (daemon, room, stream):
        slack.say(LOBBY, ALICE, "hello *acme*, see <https://example.org|the docs> &amp; "
                                f"ask <@{BOB}>")
        slack.say(LOBBY, BOB, "waves", subtype="me_message")
        frames = await stream.wait_for(2)
        assert [(f["author"]["name"], f["kind"], f["text"]) for f in frames] == [
            ("Alice A.", "message",
             "hello **acme**, see [the docs](https://example.org) \\& ask @Bob Builder"),
            ("Bob Builder", "action", "waves"),
        ]
        assert frames[0]["author"] == {"name": "Alice A.", "party": "agency",
                                       "platform": "slack"}

        await room.post("hi **alice**, see [docs](https://example.org/d?a=1&b=2)", "carol")
        [post] = await slack.wait_posts(LOBBY, 1)
        assert post["username"] == "carol"
        assert post["subtype"] == "bot_message" and post["bot_id"] == BOT_ID
        assert post["text"] == "hi *alice*, see <https://example.org/d?a=1&amp;b=2|docs>"
        # the bridge's own post came back as an event: it is not relayed
        slack.say(LOBBY, ALICE, "last")
        frames = await stream.wait_for(3)
        assert [f["text"] for f in frames][2] == "last"
        await slack.wait(lambda: all(slack.is_acked(m["ts"])
                                     for m in slack.channels[LOBBY].messages),
                         what="every envelope acknowledged")
        await asyncio.sleep(0.5)
        assert len(stream.frames) == 3
        assert daemon.terminate() == 0, daemon.log()


async def test_relayed_pings_ping_nobody(tmp_path: Path, slack: SlackServer) -> None:
    path, port = bridge_config(tmp_path, slack)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        hostile = f"<!channel> <!here|here> <!everyone> <@{ALICE}> <!subteam^S1|@team> @here"
        await room.post(hostile, f"<!channel> <@{ALICE}>")
        [post] = await slack.wait_posts(LOBBY, 1)
        assert pings(post) == []
        assert post["text"] == ("&lt;!channel&gt; &lt;!here|here&gt; &lt;!everyone&gt; "
                                f"&lt;@{ALICE}&gt; &lt;!subteam^S1|@team&gt; @here")
        assert post["username"] == f"<!channel> <@{ALICE}>"  # a username is never parsed
        assert daemon.terminate() == 0, daemon.log()


async def test_rooms_by_name_and_id_across_pages_and_bad_rooms_named_in_the_log(
        tmp_path: Path, slack: SlackServer) -> None:
    # the server pages conversations.list two channels at a time: #acme-project and the
    # private #secret are on the second page
    path, port = bridge_config(tmp_path, slack, room="#acme-project",
                               extra_rooms=["#secret", OTHER, "#no-such-channel"],
                               resolve_interval=1.0)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        await room.post("to all", "carol")
        await slack.wait_posts(LOBBY, 1)
        await slack.wait_posts(PRIVATE, 1)
        assert [c.get("cursor") for c in slack.method_calls("conversations.list")][:2] == [
            None, "Mg=="]
        # the rooms that resolved work while the others are still being looked up
        await slack.wait(lambda: "room #no-such-channel" in daemon.log(), what="the log")
        log = daemon.log()
        assert f"agency-slack: room {OTHER}: the bot is not in this channel" in log
        assert "agency-slack: room #no-such-channel: no such channel" in log
        assert slack.history(OTHER) == []
        slack.channels[OTHER].members.add(BOT_USER)  # someone invites the bot
        [late] = await slack.wait_posts(OTHER, 1, timeout=20)
        assert late["text"] == "to all"  # the message waited for the room
        assert daemon.terminate() == 0, daemon.log()


async def test_threads_edits_deletes_files_and_renames_from_slack(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack) as (daemon, room, stream):
        root = slack.say(LOBBY, ALICE, "root")
        slack.say(LOBBY, BOB, "in the thread", thread_ts=root)
        slack.edit(LOBBY, root, "root, edited")
        slack.upload(LOBBY, ALICE, [("plan.pdf", b"%PDF-1.4 the plan", "application/pdf")],
                     "the plan")
        slack.delete(LOBBY, root)
        await stream.wait_for(5)
        slack.rename_user(ALICE, "Alice the Great")
        slack.say(LOBBY, ALICE, "renamed")
        frames = await stream.wait_for(6)
        assert [(f["kind"], f["author"]["name"], f["text"]) for f in frames] == [
            ("message", "Alice A.", "root"),
            ("message", "Bob Builder", "in the thread"),
            ("edit", "Alice A.", "root, edited"),
            ("message", "Alice A.", "the plan"),
            ("delete", "Alice A.", ""),
            ("message", "Alice the Great", "renamed"),
        ]
        assert frames[1]["reply_to"] == frames[0]["id"]
        assert frames[2]["target"] == frames[0]["id"] == frames[4]["target"]
        # the API answers in the thread
        await room.post("answer", "carol", reply_to=frames[1]["id"])
        [answer] = await slack.wait_posts(LOBBY, 1)
        assert answer["thread_ts"] == root
        [record] = [m for m in export(daemon.config, "acme", "p") if m["text"] == "the plan"]
        [kept] = record["attachments"]
        assert (kept["name"], kept["mime"], kept["size"], kept["sha256"]) == (
            "plan.pdf", "application/pdf", 17, sha256(b"%PDF-1.4 the plan"))
        assert daemon.terminate() == 0, daemon.log()


async def test_as_the_bot_with_a_prefix_and_other_bots_relayed_when_asked(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack, post_as_author=False, relay_bots=True) as (
            daemon, room, stream):
        await room.post("hello <b>", "<!channel>")
        [post] = await slack.wait_posts(LOBBY, 1)
        assert "username" not in post
        assert post["text"] == "*&lt;!channel&gt;*: hello &lt;b&gt;"
        assert pings(post) == []
        slack.say(LOBBY, "U0OTHERBOT", "deploy done", subtype="bot_message",
                  bot_id="B0OTHER", username="CI")
        frames = await stream.wait_for(1)
        assert [(f["author"]["name"], f["text"]) for f in frames] == [("CI", "deploy done")]
        await asyncio.sleep(0.5)
        assert len(stream.frames) == 1  # its own post was not relayed back
        assert daemon.terminate() == 0, daemon.log()


async def test_slack_to_slack_shows_the_authors_name_and_avatar(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack, extra_rooms=["#secret"]) as (daemon, room, stream):
        slack.say(LOBBY, ALICE, "to the other channel")
        [post] = await slack.wait_posts(PRIVATE, 1)
        assert post["username"] == "Alice A."
        assert post["icons"] == {"image_48": f"https://avatars.example/{ALICE}_192.png"}
        await room.post("from the web", "carol")  # no avatar known: none sent
        posts = await slack.wait_posts(PRIVATE, 2)
        assert "icons" not in posts[1]
        await stream.wait_for(1)
        await asyncio.sleep(0.5)
        assert len(stream.frames) == 1  # the copy in #secret did not come back
        assert len(slack.history(LOBBY)) == 1
        assert daemon.terminate() == 0, daemon.log()
