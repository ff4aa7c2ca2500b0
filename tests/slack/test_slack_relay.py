"""Slack <-> API through the real roomlink process and the local Slack server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from slackkit import ALICE, BOB, BOT_ID, LOBBY, SlackServer, bridge_config, pings

from rlkit import Room, running


async def test_slack_channel_and_api_room_talk_both_ways(tmp_path: Path,
                                                         slack: SlackServer) -> None:
    path, port = bridge_config(tmp_path, slack)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        async with room.stream() as stream:
            await slack.wait(lambda: slack.connections > 0, what="a Socket Mode connection")
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
            await asyncio.sleep(0.5)
            assert len(stream.frames) == 3
            assert all(slack.is_acked(m["ts"]) for m in slack.channels[LOBBY].messages)
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
