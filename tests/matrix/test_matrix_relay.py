"""The Matrix connector against a real Synapse, beyond the conformance kit: formatting both
ways, hostile display names, aliases, invites, history before the first start, a Synapse
restart in the middle of a conversation, and an encrypted room both ways across a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import nio
from bs4 import BeautifulSoup
from mxpeer import MatrixPeer, assert_inert
from synapsekit import Synapse, SyncProxy, limit_messages, register, register_admin

import conformance
from conformance import wait_until

HOSTILE_NAME = "<b>Boss</b> @room <a href='https://evil.example'>click</a> **x** &amp;"


async def test_formatting_both_ways_and_an_alias(tmp_path: Path, matrix_room: MatrixPeer
                                                 ) -> None:
    room_id = matrix_room.room_id
    alias = "proj-" + "".join(c for c in room_id[1:12].lower() if c.isalnum())
    await matrix_room.owner.call("PUT", f"/directory/room/%23{alias}:localhost",
                                 {"room_id": room_id})
    matrix_room.room = f"#{alias}:localhost"  # the config names the room by its alias
    async with conformance.harness(tmp_path, matrix_room) as h:
        alice = await matrix_room.person("Alice")
        await matrix_room.bot_joined()
        await alice.send(room_id, {
            "msgtype": "m.text", "body": "bold it code site",
            "format": "org.matrix.custom.html",
            "formatted_body": "<strong>bold</strong> <em>it</em> <code>c*de</code> "
                              "<a href=\"https://example.org/x\">site</a> &lt;b&gt;raw"})
        [frame] = await h.frames(1)
        assert frame["text"] == ("**bold** *it* `c*de` [site](https://example.org/x) "
                                 "\\<b\\>raw")
        await h.api.post("**strong** and *em* and `code` and [a link](https://example.org)",
                         "bob")
        [post] = await h.posts(1)
        soup = BeautifulSoup(post.raw["formatted_body"], "html.parser")
        assert [(t.name, t.get_text()) for t in soup.find_all(True)] == [
            ("strong", "bob"), ("strong", "strong"), ("em", "em"), ("code", "code"),
            ("a", "a link")]
        assert soup.find("a")["href"] == "https://example.org"
        assert post.raw["body"] == "bob: strong and em and code and a link (https://example.org)"
        # the alias was resolved once and kept: the bridge answers in the room behind it
        assert post.author == "bob"


async def test_hostile_display_name_stays_text(tmp_path: Path, matrix_room: MatrixPeer
                                               ) -> None:
    async with conformance.harness(tmp_path, matrix_room) as h:
        await matrix_room.say("hello", HOSTILE_NAME)
        [frame] = await h.frames(1)
        assert frame["author"]["name"] == HOSTILE_NAME  # exactly, as text
        assert frame["text"] == "hello"
        await h.api.post("<b>not bold</b> @room", HOSTILE_NAME)
        [post] = await h.posts(1)
        assert post.author == HOSTILE_NAME and post.text == "<b>not bold</b> @room"
        assert_inert(post.raw, post.author, "<b>not bold</b> @room")


async def test_history_before_the_first_start_and_foreign_invites(
        tmp_path: Path, matrix_room: MatrixPeer, http: aiohttp.ClientSession,
        synapse: Synapse) -> None:
    alice = await matrix_room.person("Alice")
    await alice.send(matrix_room.room_id, {"msgtype": "m.text", "body": "said before"})
    stranger = await register(http, synapse.url, "stranger")
    elsewhere = await stranger.create_room([matrix_room.bot.user_id])
    async with conformance.harness(tmp_path, matrix_room) as h:
        await matrix_room.say("said after", "Alice")
        [frame] = await h.frames(1)
        assert frame["text"] == "said after"

        async def bot_membership() -> str | None:
            state = await stranger.call("GET", f"/rooms/{elsewhere}/state")
            return next((e["content"]["membership"] for e in state
                         if e["type"] == "m.room.member"
                         and e["state_key"] == matrix_room.bot.user_id), None)

        for _ in range(100):  # the invite is declined, never accepted
            if await bot_membership() == "leave":
                break
            await asyncio.sleep(0.1)
        assert await bot_membership() == "leave"
        await asyncio.sleep(1.0)
        assert [f["text"] for f in h.stream.frames] == ["said after"]


async def test_synapse_restart_mid_conversation_loses_nothing(
        tmp_path: Path, matrix_room: MatrixPeer, synapse: Synapse) -> None:
    async with conformance.harness(tmp_path, matrix_room) as h:
        await matrix_room.say("before the restart", "Alice")
        await h.frames(1)
        await h.api.post("web one", "bob")
        await h.posts(1)
        synapse.stop()
        try:
            for i in range(3):  # said while the homeserver is down: they wait, in order
                await h.api.post(f"web while down {i}", "bob")
            await asyncio.sleep(2.0)
        finally:
            synapse.start()
        await matrix_room.say("platform after the restart", "Alice")
        posts = await h.posts(4, timeout=60)
        assert [p.text for p in posts] == ["web one"] + [f"web while down {i}"
                                                         for i in range(3)]
        frames = await h.frames(2, timeout=60)
        assert [f["text"] for f in frames] == ["before the restart",
                                               "platform after the restart"]
        await asyncio.sleep(1.5)
        assert len(matrix_room.posts()) == 4 and len(h.stream.frames) == 2


async def test_more_said_during_a_downtime_than_one_sync_holds(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    """The sync answer is "limited" (here to 3 events per room): the rest is fetched."""
    matrix_room.options = {"sync_timeline_limit": 3}
    async with conformance.harness(tmp_path, matrix_room) as h:
        await matrix_room.say("before the downtime", "Alice")
        await h.frames(1)
        assert h.daemon.terminate() == 0
        said = [f"said while the bridge was down {i}" for i in range(10)]
        for text in said:
            await matrix_room.say(text, "Alice")
        await h.start()
        frames = await h.frames(11, timeout=60)
        assert [f["text"] for f in frames] == ["before the downtime", *said]
        await asyncio.sleep(1.5)
        assert len(h.stream.frames) == 11


async def test_kicked_bot_joins_again_and_delivers_what_waited(
        tmp_path: Path, matrix_room: MatrixPeer) -> None:
    async with conformance.harness(tmp_path, matrix_room) as h:
        await matrix_room.say("before the kick", "Alice")
        await h.frames(1)
        await matrix_room.owner.kick(matrix_room.room_id, matrix_room.bot.user_id)
        for i in range(3):
            await h.api.post(f"said while out {i}", "bob")
        posts = await h.posts(3, timeout=60)  # the room is public: the bot joins again
        assert [p.text for p in posts] == [f"said while out {i}" for i in range(3)]
        await matrix_room.say("after the re-join", "Alice")
        frames = await h.frames(2, timeout=60)
        assert [f["text"] for f in frames] == ["before the kick", "after the re-join"]


async def test_rate_limit_is_waited_out(tmp_path: Path, matrix_room: MatrixPeer,
                                        http: aiohttp.ClientSession, synapse: Synapse
                                        ) -> None:
    """Synapse answers 429 M_LIMIT_EXCEEDED with retry_after_ms: the message waits that
    long and goes out again; nothing is lost, doubled or reordered."""
    admin = await register_admin(http, synapse.url)
    await limit_messages(admin, matrix_room.bot.user_id, 1, 1)
    async with conformance.harness(tmp_path, matrix_room) as h:
        for i in range(4):
            await h.api.post(f"burst {i}", "bob")
        posts = await h.posts(4, timeout=60)
        assert [p.text for p in posts] == [f"burst {i}" for i in range(4)]
        await asyncio.sleep(1.5)
        assert len(matrix_room.posts()) == 4
        assert "M_LIMIT_EXCEEDED" in h.daemon.log()  # it was refused, and waited


async def test_encrypted_room_both_ways_across_a_restart(
        tmp_path: Path, http: aiohttp.ClientSession, synapse: Synapse, proxy: SyncProxy
) -> None:
    peer = MatrixPeer(http, synapse.url, proxy, tmp_path / "bot-keys")
    peer.password_login = True  # logs in once; the device and token are kept in the store
    await peer.setup(encrypted=True)
    account = await register(http, synapse.url, "alice")
    await account.set_name("Alice Secret")
    await account.join(peer.room)
    alice = nio.AsyncClient(synapse.url, account.user_id, device_id=account.device_id,
                            store_path=str(tmp_path / "alice-keys"),
                            config=nio.AsyncClientConfig(encryption_enabled=True,
                                                         store_sync_tokens=False))
    (tmp_path / "alice-keys").mkdir()
    alice.restore_login(account.user_id, account.device_id, account.token)
    heard: list[str] = []

    async def on_text(room: Any, event: Any) -> None:
        if event.sender == peer.bot.user_id:
            heard.append(event.body)

    alice.add_event_callback(on_text, nio.RoomMessageText)
    syncing = asyncio.create_task(alice.sync_forever(timeout=1000, full_state=True))
    try:
        async with conformance.harness(tmp_path, peer) as h:
            await peer.bot_joined()
            await wait_until(lambda: peer.room in alice.rooms, 30, lambda: "alice's sync")
            for round_ in ("first", "after a restart"):
                said = f"secret from matrix, {round_}"
                sent = await alice.room_send(peer.room, "m.room.message",
                                             {"msgtype": "m.text", "body": said},
                                             ignore_unverified_devices=True)
                assert isinstance(sent, nio.RoomSendResponse), sent
                frame = (await h.frames(len(h.stream.frames) + 1, timeout=60))[-1]
                assert (frame["text"], frame["author"]["name"]) == (said, "Alice Secret")
                answer = f"secret from the web, {round_}"
                await h.api.post(answer, "bob")
                await wait_until(lambda a=answer: any(a in b for b in heard), 60,
                                 lambda: f"alice decrypting the bridge's post: {heard}")
                await h.restart()  # the keys are in key_store: they survive it
            # on the wire, nothing the bridge said is readable
            raw = await peer.owner.events(peer.room)
            by_bot = [e for e in raw if e["sender"] == peer.bot.user_id
                      and e["type"] not in ("m.room.member",)]
            assert by_bot and {e["type"] for e in by_bot} == {"m.room.encrypted"}
            assert "secret from the web" not in json.dumps(raw)
            # one login for three starts: the registration's device and the bridge's
            assert len(await peer.bot.devices()) == 2
    finally:
        syncing.cancel()
        await asyncio.gather(syncing, return_exceptions=True)
        await alice.close()
        await peer.close()
