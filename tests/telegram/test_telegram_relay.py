"""The real roomlink process between the Bot API test server and an API room."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from tgkit import GROUP, bot_posts, config, env, shown, wait_until

from rlkit import Room, export, running


async def test_relay_both_ways_with_names_formatting_and_no_echo(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice", "Example", username="alice")
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            tg.say_html(GROUP, alice, 'hi <b>team</b>, see <a href="https://example.com/x">'
                        "the doc</a> and <code>make test</code>")
            [frame] = await stream.wait_for(1)
            assert frame["author"] == {"name": "Alice Example", "party": "agency",
                                       "platform": "telegram"}
            assert frame["text"] == ("hi **team**, see [the doc](<https://example.com/x>) and "
                                     "`make test`")
            await api.post("hello **Alice**, see [this](https://example.org/?a=1&b=2)", "bob")
            [post] = await bot_posts(tg, GROUP, 1)
            assert shown(post) == ("bob", "hello Alice, see this")
            assert post["_html"] == ('<b>bob</b>: hello <b>Alice</b>, see '
                                     '<a href="https://example.org/?a=1&amp;b=2">this</a>')
            assert post["link_preview_options"] == {"is_disabled": True}
            await asyncio.sleep(1.0)  # no echo of the bridge's own post, no second copy
            assert len(stream.frames) == 1 and len(tg.bot_messages(GROUP)) == 1
        assert daemon.terminate() == 0
    records = export(path, "acme", env=env(tg))
    assert [r["author"]["name"] for r in records] == ["Alice Example", "bob"]


async def test_html_injection_is_shown_literally(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg)
    hostile = "<b>x</b> <script>alert(1)</script> &amp; </i> <a href='javascript:x'>y</a>"
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        await Room(http, port, "lobby").post(hostile, "<i>mallory</i>\nFake: line")
        [post] = await bot_posts(tg, GROUP, 1)
        # the server parsed it like Telegram: no "can't parse entities", and nothing but
        # the author is formatted
        assert shown(post) == ("<i>mallory</i> Fake: line", hostile)
        assert [e["type"] for e in post.get("entities", [])] == ["bold"]


async def test_edits_both_ways_and_deletes_from_the_api_room(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg)
    alice = tg.user("Alice")
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        async with api.stream() as stream:
            native = tg.say(GROUP, alice, "draft")
            [original] = await stream.wait_for(1)
            tg.edit(GROUP, native, "final", [{"type": "italic", "offset": 0, "length": 5}])
            _, edit = await stream.wait_for(2)
            assert (edit["kind"], edit["target"], edit["text"]) == ("edit", original["id"],
                                                                    "*final*")
            said = (await api.post("web draft", "bob"))["id"]
            [post] = await bot_posts(tg, GROUP, 1)
            async with http.patch(f"{api.base}/messages/{said}",
                                  json={"text": "web **final**", "author": "bob"}) as resp:
                assert resp.status == 202, await resp.text()
            await wait_until(lambda: tg.bot_messages(GROUP)[0].get("edit_date") is not None,
                             what="the edit")
            edited = tg.bot_messages(GROUP)[0]
            assert shown(edited) == ("bob", "web final")
            assert tg.chats[GROUP].edits[post["message_id"]] == ["bob: web draft"]
            async with http.delete(f"{api.base}/messages/{said}", json={"author": "bob"}) as resp:
                assert resp.status == 202, await resp.text()
            await wait_until(lambda: post["message_id"] in tg.chats[GROUP].deleted,
                             what="the delete")
            assert len(tg.bot_messages(GROUP)) == 1  # changed in place, never posted again


async def test_a_long_message_arrives_whole_in_balanced_parts(tmp_path: Path, tg: Any) -> None:
    path, port = config(tmp_path, tg)
    words = [f"**word{i}**" if i % 7 == 0 else f"word{i}" for i in range(1300)]
    text = " ".join(words)
    assert len(text) > 10_000
    async with running(path, [port], env(tg)), aiohttp.ClientSession() as http:
        api = Room(http, port, "lobby")
        said = (await api.post(text, "bob"))["id"]
        await wait_until(lambda: len(tg.sent_calls("sendMessage")) >= 3, what="the parts")
        await asyncio.sleep(1.5)  # all parts are in
        posts = tg.bot_messages(GROUP)
        assert len(posts) >= 3
        assert all(len(p["text"]) <= 4096 for p in posts)
        # the server parsed each part's HTML: each one is balanced
        visible = " ".join(p["text"] for p in posts)
        assert visible == "bob: " + text.replace("**", "")
        bold = {p["text"][e["offset"]:e["offset"] + e["length"]]
                for p in posts for e in p.get("entities", []) if e["type"] == "bold"}
        assert bold == {"bob"} | {f"word{i}" for i in range(0, 1300, 7)}
        # an edit changes the first part and says so; a delete removes every part
        async with http.patch(f"{api.base}/messages/{said}",
                              json={"text": "short now", "author": "bob"}) as resp:
            assert resp.status == 202
        first = posts[0]["message_id"]
        await wait_until(lambda: tg.chats[GROUP].messages[first].get("edit_date") is not None,
                         what="the edit")
        now = tg.chats[GROUP].messages[first]["text"]
        assert now.startswith("bob: short now") and "edited" in now
        async with http.delete(f"{api.base}/messages/{said}", json={"author": "bob"}) as resp:
            assert resp.status == 202
        await wait_until(lambda: {p["message_id"] for p in posts} <= tg.chats[GROUP].deleted,
                         what="every part deleted")
