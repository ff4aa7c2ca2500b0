"""What the bridge takes from a Telegram group, and what it leaves alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from tgkit import GROUP, config, env, wait_until

from rlkit import Room, export, running


async def test_who_and_what_is_relayed(tmp_path: Path, tg: Any) -> None:
    other = tg.add_chat(-1009999, "supergroup", "Somebody else's group")
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice", "Example")
    nameless = tg.user("", username="ghost")
    helper = tg.user("Helper", is_bot=True)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            tg.say(other.id, alice, "not a room of ours")
            tg.say(GROUP, helper, "a bot speaking")  # relay_bots is off
            tg.say(GROUP, tg.me, "the bridge's own post")  # its own account: never relayed
            tg.say(GROUP, nameless, "from the nameless")
            tg.join(GROUP, alice)
            tg.leave(GROUP, alice)
            tg.say(GROUP, alice, None, caption="the **plan**", caption_entities=[
                {"type": "bold", "offset": 6, "length": 4}],
                document={"file_id": "DOC1", "file_unique_id": "u1", "file_name": "plan.pdf",
                          "mime_type": "application/pdf", "file_size": 12345})
            tg.say(GROUP, alice, None, photo=[
                {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90,
                 "file_size": 100},
                {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960,
                 "file_size": 90000}])
            tg.say(GROUP, alice, None, sticker={
                "file_id": "STK", "file_unique_id": "st", "type": "regular", "width": 512,
                "height": 512, "is_animated": False, "is_video": False, "emoji": "👍"})
            tg.say(GROUP, alice, None, voice={"file_id": "VOX", "file_unique_id": "v",
                                              "duration": 3, "mime_type": "audio/ogg"})
            tg.say(GROUP, alice, "🎉 last, with 🦊🐙🐳 **stars**", entities=[
                {"type": "italic", "offset": 0, "length": 2},
                {"type": "bold", "offset": 14, "length": 6}])
            frames = await stream.wait_for(8)
            await asyncio.sleep(1.0)
            assert len(stream.frames) == 8, stream.frames
        assert daemon.terminate() == 0
    files = [r["attachments"] for r in export(path, "acme", env=env(tg))]
    by_kind = [(f["kind"], f["author"]["name"]) for f in frames]
    assert by_kind == [("message", "@ghost"), ("join", "Alice Example"),
                       ("part", "Alice Example"), *[("message", "Alice Example")] * 5]
    assert frames[3]["text"] == "the \\*\\***plan**\\*\\*"
    # file metadata: what a later download needs (tg-file:<file_id>), name, type, size
    assert files[3] == [{"url": "tg-file:DOC1", "name": "plan.pdf", "mime": "application/pdf",
                         "size": 12345}]
    assert files[4] == [{"url": "tg-file:big", "name": "photo.jpg", "mime": "image/jpeg",
                         "size": 90000}]
    assert files[5][0]["name"] == "sticker 👍" and files[5][0]["mime"] == "image/webp"
    assert files[6][0]["mime"] == "audio/ogg" and files[7] == []
    # entity offsets count UTF-16 units: each of these emoji takes two
    assert frames[7]["text"] == "*🎉* last, with **🦊🐙🐳** \\*\\*stars\\*\\*"


async def test_malformed_updates_are_skipped_and_the_next_one_relays(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    tg.push_raw({"message": {"message_id": 1, "text": "no chat, no date"}})
    tg.push_raw({"message": "not an object"})
    tg.push_raw({"edited_message": {"message_id": 99, "date": 1, "chat": {"id": GROUP}}})
    tg.push_raw({"poll": {"id": "x"}})  # a kind this bot never asked for
    tg.say(GROUP, alice, "still here")
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        async with Room(http, port, "lobby").stream() as stream:
            [frame] = await stream.wait_for(1)
            assert frame["text"] == "still here"
            await asyncio.sleep(0.5)
            assert len(stream.frames) == 1
        # the offset went past the broken ones: the server forgot every update
        await wait_until(lambda: tg.updates == [], what="every update confirmed")
        log = daemon.log()
    assert log.count("skipping update") >= 2
    assert tg.token not in log


async def test_a_channel_named_by_its_username(tmp_path: Path, tg: Any) -> None:
    channel = tg.add_chat(-1007770001, "channel", "Acme news", username="acme_news")
    path, port = config(tmp_path, tg, rooms=["@Acme_News"])
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            # a channel post has no sender, only the channel itself as sender_chat
            tg.say(channel.id, None, "release 1.0 is out", sender_chat=channel.json())
            [frame] = await stream.wait_for(1)
            assert (frame["author"]["name"], frame["text"]) == ("Acme news",
                                                                "release 1.0 is out")
            await api.post("congratulations", "bob")
            await wait_until(lambda: len(tg.bot_messages(channel.id)) == 1, what="the post")
            assert tg.sent_calls("sendMessage")[0]["chat_id"] == "@acme_news"


async def test_relay_bots_lets_other_bots_through_but_never_itself(
    tmp_path: Path, tg: Any
) -> None:
    path, port = config(tmp_path, tg, relay_bots=True)
    helper = tg.user("CI", username="ci_bot", is_bot=True)
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        async with Room(http, port, "lobby").stream() as stream:
            tg.say(GROUP, tg.me, "the bridge's own post")
            tg.say(GROUP, helper, "build passed")
            [frame] = await stream.wait_for(1)
            await asyncio.sleep(0.5)
            assert len(stream.frames) == 1
            assert (frame["author"]["name"], frame["text"]) == ("CI", "build passed")
