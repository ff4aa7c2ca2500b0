"""Crashes, rate limits, upgraded groups, refusals and conflicts: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
from tgkit import GROUP, GROUP_ROOM, bot_posts, config, env, shown, wait_until

from rlkit import Room, export, running


async def test_kill_between_get_updates_and_storing_relays_exactly_once(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            tg.say(GROUP, alice, "before")
            await stream.wait_for(1)
            polls = tg.polls
            await wait_until(lambda: tg.polls > polls, what="the next poll")  # offset stored
            # hold agency's store so the next update cannot be stored, then kill -9 the daemon
            # once getUpdates has handed it over: the crash falls between the two for sure
            lock = sqlite3.connect(tmp_path / "agency.db", timeout=30)
            lock.execute("BEGIN EXCLUSIVE")
            native = tg.say(GROUP, alice, "said just before a crash")
            await tg.wait_handed_over(GROUP, native)
            await asyncio.sleep(0.3)
            daemon.kill()
            lock.rollback()
            lock.close()
            await daemon.start()
            frames = await stream.wait_for(2, timeout=60)
            await asyncio.sleep(2.0)  # a second copy would have come by now
            assert [f["text"] for f in stream.frames] == ["before", "said just before a crash"]
            assert frames[1]["author"]["name"] == "Alice"
        assert daemon.terminate() == 0
    for party in ("agency", "acme"):
        assert [r["text"] for r in export(path, party, env=env(tg))] == [
            "before", "said just before a crash"]


async def test_429_waits_retry_after_without_loss_or_a_second_copy(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 2", {"retry_after": 2},
                 times=2)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        started = time.monotonic()
        await api.post("one", "bob")
        await api.post("two", "bob")
        posts = await bot_posts(tg, GROUP, 2)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
        assert [shown(p)[1] for p in tg.bot_messages(GROUP)] == ["one", "two"]
        assert elapsed >= 3.5, elapsed  # waited retry_after twice
        assert len(tg.sent_calls("sendMessage")) == 4  # two refused, each resent once
        assert posts[0]["text"] == "bob: one"
        log = daemon.log()
    assert "rate limited" in log and "marked failed" not in log
    assert "Deprecat" not in log  # PTB's retry_after warning is not the admin's business


async def test_a_group_upgraded_to_a_supergroup_keeps_receiving(tmp_path: Path, tg: Any) -> None:
    old, new = -4001, -1004001
    tg.add_chat(old, "group", "Small group")
    path, port = config(tmp_path, tg, rooms=[str(old)])
    alice = tg.user("Alice")
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            await api.post("in the group", "bob")
            await bot_posts(tg, old, 1)
            tg.migrate(old, new, announce=False)  # the bridge learns it from the refusal
            await api.post("after the upgrade", "bob")
            [moved] = await bot_posts(tg, new, 1)
            assert shown(moved) == ("bob", "after the upgrade")
            await wait_until(lambda: "upgraded to the supergroup" in daemon.log(),
                             what="the warning")
            assert daemon.terminate() == 0
            refused = len(tg.sent_calls("sendMessage"))
            await daemon.start()  # the new id is remembered in the store
            await api.post("after a restart", "bob")
            await bot_posts(tg, new, 2)
            assert len(tg.sent_calls("sendMessage")) == refused + 1  # straight to the new id
            tg.say(new, alice, "from the supergroup")
            [frame] = await stream.wait_for(1)
            assert (frame["text"], frame["author"]["name"]) == ("from the supergroup", "Alice")
    assert f"change room {old} to '{new}'" in daemon.log()


async def test_a_service_message_announcing_the_upgrade_is_followed(
    tmp_path: Path, tg: Any
) -> None:
    old, new = -4002, -1004002
    tg.add_chat(old, "group", "Small group")
    path, port = config(tmp_path, tg, rooms=[str(old)])
    alice = tg.user("Alice")
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            tg.migrate(old, new)  # migrate_to_chat_id / migrate_from_chat_id updates
            tg.say(new, alice, "hello from the supergroup")
            [frame] = await stream.wait_for(1)
            assert frame["text"] == "hello from the supergroup"
            await api.post("reply", "bob")
            await bot_posts(tg, new, 1)
            assert all(p.get("chat_id") != str(old) for p in tg.sent_calls("sendMessage"))
    assert "upgraded to the supergroup" in daemon.log()


async def test_permanent_refusals_are_logged_with_the_reason_and_the_room_moves_on(
    tmp_path: Path, tg: Any
) -> None:
    missing = "-100555"
    path, port = config(tmp_path, tg, rooms=[GROUP_ROOM, missing])
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        await Room(http, port, "r1").post("to nowhere", "bob")
        await wait_until(lambda: "chat not found" in daemon.log().lower(), what="chat not found")
        tg.chats[GROUP].bot_kicked = True
        await Room(http, port, "lobby").post("while kicked", "bob")
        await wait_until(lambda: "bot was kicked" in daemon.log().lower(), what="the kick")
        tg.chats[GROUP].bot_kicked = False
        await Room(http, port, "lobby").post("after being added again", "bob")
        [post] = await bot_posts(tg, GROUP, 1)
        assert shown(post)[1] == "after being added again"
        log = daemon.log()
    assert log.count("marked failed") == 2
    assert len([c for c in tg.sent_calls("sendMessage") if c["chat_id"] == missing]) == 1


async def test_a_webhook_conflict_is_named_in_the_log_and_polling_resumes(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg, reconnect_initial=0.2, reconnect_max=0.5)
    tg.webhook = "https://bots.example/hook"
    tg.say(GROUP, tg.user("Alice"), "waiting behind a webhook")
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        async with Room(http, port, "lobby").stream() as stream:
            await wait_until(lambda: "409 Conflict" in daemon.log(), what="the conflict")
            assert "webhook" in daemon.log() and "deleteWebhook" in daemon.log()
            tg.webhook = ""  # the admin ran deleteWebhook
            [frame] = await stream.wait_for(1)
            assert frame["text"] == "waiting behind a webhook"


async def test_a_wrong_token_is_a_clear_error_without_the_token(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg, reconnect_initial=0.2, reconnect_max=0.5)
    wrong = {"TG_TOKEN": "999999:WRONG-secret-token"}
    async with running(path, [port], wrong) as daemon, aiohttp.ClientSession() as http:
        await wait_until(lambda: "rejects the token" in daemon.log(), what="the token error")
        await Room(http, port, "lobby").post("kept until the token works", "bob")
        await asyncio.sleep(1.0)
        assert daemon.terminate() == 0
        assert "WRONG-secret-token" not in daemon.log()
    async with running(path, [port], env(tg)):
        [post] = await bot_posts(tg, GROUP, 1)  # waited in the outbox, not failed
        assert shown(post)[1] == "kept until the token works"


async def test_stop_cancels_a_pending_long_poll(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg, poll_timeout=50)
    async with running(path, [port], env(tg)) as daemon:
        await wait_until(lambda: tg.polls >= 1, what="a poll")
        await asyncio.sleep(0.5)
        started = time.monotonic()
        assert daemon.terminate() == 0
        assert time.monotonic() - started < 4.5  # within shutdown_grace (3 s) and a margin


async def test_a_429_in_the_middle_of_a_long_message_resends_only_the_missing_parts(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    text = " ".join(f"w{i}" for i in range(3000))  # about 17,000 characters: 5 parts
    whole = "bob: " + text

    def joined() -> str:
        return " ".join(p["text"] for p in tg.bot_messages(GROUP))

    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        await Room(http, port, "lobby").post(text, "bob")
        await bot_posts(tg, GROUP, 1)
        tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", {"retry_after": 1})
        await wait_until(lambda: len(joined()) >= len(whole), what="every part")
        await asyncio.sleep(1.5)
        assert joined() == whole  # each part once: the first was not posted again
        assert len(tg.bot_messages(GROUP)) == 5
        assert len(tg.sent_calls("sendMessage")) == 6  # one refused, resent


async def test_messages_wait_while_the_bot_api_is_down(tmp_path: Path, tg: Any) -> None:
    # two attempts only: a room that is down must wait without spending them
    path, port = config(tmp_path, tg, delivery={"max_attempts": 2},
                        reconnect_initial=0.2, reconnect_max=0.5)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        await api.post("before the outage", "bob")
        await bot_posts(tg, GROUP, 1)
        await tg.stop()
        await wait_until(lambda: "getUpdates failed" in daemon.log(), what="the outage")
        for i in range(3):
            await api.post(f"during the outage {i}", "bob")
        await asyncio.sleep(3.0)
        await tg.start(tg.port)
        posts = await bot_posts(tg, GROUP, 4)
        await asyncio.sleep(1.0)
        assert [shown(p)[1] for p in tg.bot_messages(GROUP)] == [
            "before the outage", *(f"during the outage {i}" for i in range(3))]
        assert "marked failed" not in daemon.log()
        assert posts[-1]["text"] == "bob: during the outage 2"
