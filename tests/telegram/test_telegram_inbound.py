"""What the bridge takes from a Telegram group, and what it leaves alone."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
from tgkit import GROUP, config, env, media, wait_until

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
            pdf_bytes = b"%PDF-1.4 the plan " + bytes(range(256)) * 40
            photo_bytes = media.png(1280, 960, b"pixels" * 3000)
            tg.say(GROUP, alice, None, caption="the **plan**", caption_entities=[
                {"type": "bold", "offset": 6, "length": 4}],
                document=tg.document(pdf_bytes, "plan.pdf", "application/pdf"))
            tg.say(GROUP, alice, None, photo=tg.photo(photo_bytes))
            sticker = tg.document(b"RIFF....WEBPVP8X sticker", None, kind="sticker")
            tg.say(GROUP, alice, None, sticker={
                **sticker, "type": "regular", "width": 512, "height": 512,
                "is_animated": False, "is_video": False, "emoji": "👍"})
            voice = tg.document(b"OggS voice", None, "audio/ogg", kind="voice",
                                with_size=False)  # file_size is optional
            tg.say(GROUP, alice, None, voice={**voice, "duration": 3})
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
    # the files themselves, kept with their names (a photo gets one), types and sizes
    sha = [[(a["name"], a["mime"], a["size"], a["sha256"]) for a in f] for f in files]
    photo_id = tg.photo_ids[-1]  # the largest size, not the thumbnail
    assert sha[3] == [("plan.pdf", "application/pdf", len(pdf_bytes),
                       hashlib.sha256(pdf_bytes).hexdigest())]
    assert sha[4] == [(f"photo-{photo_id}.jpg", "image/jpeg", len(photo_bytes),
                       hashlib.sha256(photo_bytes).hexdigest())]
    assert sha[5][0][:2] == (f"sticker-{sticker['file_unique_id']}.webp", "image/webp")
    assert sha[6][0][1:3] == ("audio/ogg", len(b"OggS voice")) and files[7] == []
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
