"""Slack faults through the real roomlink process: rate limits, refusals, server errors,
re-delivered envelopes, disconnects and dropped connections."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from slackkit import ALICE, LOBBY, SlackServer, bridge_config, bridged

from rlkit import Room, running


async def test_429_waits_retry_after_then_posts_once(tmp_path: Path, slack: SlackServer) -> None:
    path, port = bridge_config(tmp_path, slack)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        await slack.wait(lambda: slack.connections > 0, what="a Socket Mode connection")
        slack.fail("chat.postMessage", "ratelimited", status=429, retry_after=1)
        await room.post("one", "carol")
        await room.post("two", "carol")
        posts = await slack.wait_posts(LOBBY, 2)
        assert [p["text"] for p in posts] == ["one", "two"]  # in order, once each
        await asyncio.sleep(1.0)
        assert len(slack.history(LOBBY)) == 2
        calls = [t for t, (m, _) in zip(slack.call_times, slack.calls, strict=True)
                 if m == "chat.postMessage"]
        assert len(calls) == 3  # the refused call, then one for each message
        assert calls[1] - calls[0] >= 0.95  # Retry-After: 1 was honoured
        assert "rate limited" in daemon.log()
        assert daemon.terminate() == 0, daemon.log()


async def test_permanent_errors_fail_at_once_and_server_errors_are_retried(
        tmp_path: Path, slack: SlackServer) -> None:
    path, port = bridge_config(tmp_path, slack)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        slack.fail("chat.postMessage", "msg_too_long")
        await room.post("refused for good", "carol")
        slack.fail("chat.postMessage", "internal_error", status=500, times=2)
        await room.post("retried", "carol")
        [post] = await slack.wait_posts(LOBBY, 1)
        assert post["text"] == "retried"
        texts = [a.get("text") for a in slack.method_calls("chat.postMessage")]
        assert texts.count("refused for good") == 1  # never sent again
        assert texts.count("retried") == 3
        log = daemon.log()
        assert "msg_too_long" in log and "marked failed" in log
        assert "xoxb-" not in log and "xapp-" not in log  # no token in the log
        assert daemon.terminate() == 0, log


async def test_redelivered_and_unacked_envelopes_are_relayed_once(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack) as (daemon, _, stream):
        first = slack.say(LOBBY, ALICE, "retried by Slack")
        await stream.wait_for(1)
        await slack.wait(lambda: slack.is_acked(first), what="the ack")
        await slack.resend(first)  # Slack's retry: same event_id, retry_attempt 1
        # an ack that never reached Slack: the envelope comes again on the next
        # connection, with retry_attempt raised
        slack.lose_acks = True
        second = slack.say(LOBBY, ALICE, "ack lost")
        await stream.wait_for(2)
        await slack.wait(lambda: slack.lost_acks, what="the ack that gets lost")
        slack.lose_acks = False
        await slack.drop_sockets()
        await slack.wait(lambda: slack.is_acked(second), what="the second ack")
        retries = [e for e in slack.sent if e["retry_attempt"] > 0]
        assert {e["payload"]["event"]["ts"] for e in retries} == {first, second}
        await asyncio.sleep(1.0)
        assert [f["text"] for f in stream.frames] == ["retried by Slack", "ack lost"]
        assert daemon.terminate() == 0, daemon.log()


async def test_disconnects_and_dropped_connections_lose_nothing(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack) as (daemon, room, stream):
        slack.say(LOBBY, ALICE, "before")
        await stream.wait_for(1)
        disconnect = asyncio.create_task(slack.send_disconnect("refresh_requested"))
        slack.say(LOBBY, ALICE, "during the refresh")
        await disconnect
        slack.say(LOBBY, ALICE, "between connections")
        await slack.wait(lambda: slack.connections >= 2, what="a reconnect")
        slack.say(LOBBY, ALICE, "after the refresh")
        await stream.wait_for(4)
        # a plain drop mid-stream: whatever was sent but not acked comes again
        slack.lose_acks = True
        slack.say(LOBBY, ALICE, "in flight")
        await stream.wait_for(5)
        await slack.wait(lambda: slack.lost_acks, what="the ack that gets lost")
        slack.lose_acks = False
        await slack.drop_sockets()
        slack.say(LOBBY, ALICE, "while down")
        await stream.wait_for(6)
        await asyncio.sleep(1.0)
        assert [f["text"] for f in stream.frames] == [
            "before", "during the refresh", "between connections", "after the refresh",
            "in flight", "while down"]
        assert slack.connections >= 3
        # the bridge still posts through all this
        await room.post("still here", "carol")
        assert [p["text"] for p in await slack.wait_posts(LOBBY, 1)] == ["still here"]
        assert daemon.terminate() == 0, daemon.log()


async def test_connections_open_failing_backs_off_then_connects(
        tmp_path: Path, slack: SlackServer) -> None:
    slack.fail("apps.connections.open", "internal_error", status=500, times=3)
    path, port = bridge_config(tmp_path, slack)
    started = time.monotonic()
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby")
        async with room.stream() as stream:
            await slack.wait(lambda: slack.connections > 0, 30, "a Socket Mode connection")
            assert len(slack.method_calls("apps.connections.open")) >= 4
            assert time.monotonic() - started >= 0.3  # it waited between the attempts
            slack.say(LOBBY, ALICE, "finally")
            assert [f["text"] for f in await stream.wait_for(1)] == ["finally"]
        assert "apps.connections.open failed" in daemon.log()
        assert daemon.terminate() == 0, daemon.log()


async def test_malformed_events_are_skipped_and_lose_no_other_message(
        tmp_path: Path, slack: SlackServer) -> None:
    async with bridged(tmp_path, slack) as (daemon, _, stream):
        for event in (
            {"type": "message", "channel": LOBBY},
            {"type": "message", "channel": LOBBY, "ts": "1.000001", "user": ALICE,
             "text": 12345, "files": "not a list"},
            {"type": "message", "subtype": "message_changed", "channel": LOBBY},
            {"type": "message", "subtype": "message_changed", "channel": LOBBY,
             "message": "not an object"},
            {"type": "message", "subtype": "message_deleted", "channel": LOBBY,
             "deleted_ts": "999.000001"},
            {"type": "message", "channel": LOBBY, "ts": "2.000001", "user": ALICE,
             "text": "lone \udc80 surrogate\x00"},
            {"type": "user_change", "user": "not an object"},
            {"type": "app_mention", "channel": LOBBY, "ts": "3.000001"},
        ):
            slack.emit(event)
        slack.say(LOBBY, "U0NOBODY1", "from someone users.info does not know")
        slack.say(LOBBY, ALICE, "still fine")
        await slack.wait(lambda: any(f["text"] == "still fine" for f in stream.frames),
                         what="the last message")
        await slack.wait(lambda: len(slack.acked) == len(slack.sent), what="every ack")
        frames = stream.frames
        texts = [f["text"] for f in frames]
        assert texts[-2:] == ["from someone users.info does not know", "still fine"]
        assert frames[-2]["author"]["name"] == "U0NOBODY1"
        assert "\x00" not in "".join(texts)
        assert daemon.terminate() == 0, daemon.log()
