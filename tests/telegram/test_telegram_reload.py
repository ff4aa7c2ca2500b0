"""A reload that adds a Telegram group to the bot's rooms and removes another: the bot
keeps polling as it was (no new session), the added group relays at once both ways, the
removed one no longer does."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from tgkit import GROUP, GROUP_ROOM, bot_posts, config, env, wait_until

from rlkit import Room, running, write_config

OTHER = -1005555555


async def test_reload_changes_groups_without_a_new_session(tmp_path: Path, tg: Any) -> None:
    tg.add_chat(OTHER, "supergroup", "Other project")
    alice = tg.user("Alice", "Example")
    path, port = config(tmp_path, tg)
    async with running(path, [port], env(tg)) as daemon, aiohttp.ClientSession() as http:
        lobby = Room(http, port, "lobby")
        async with lobby.stream() as lobby_stream:
            tg.say(GROUP, alice, "before")
            await lobby_stream.wait_for(1)

            # the new config: the other group instead of the first one, in a new pipe
            # with the lobby and a new API room r1
            settings = yaml.safe_load(path.read_text())
            settings["pipes"] = {"p1": {"rooms": [
                {"connector": "agency-tg", "room": str(OTHER)},
                {"connector": "acme-api", "room": "r1"},
                {"connector": "acme-api", "room": "lobby"}]}}
            write_config(path, settings)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            await wait_until(lambda: "reload done" in daemon.log(), what="the reload")
            assert (f"connector agency-tg: rooms +{OTHER} -{GROUP_ROOM} (kept its connection)"
                    in daemon.log())

            r1 = Room(http, port, "r1")
            async with r1.stream() as r1_stream:
                tg.say(OTHER, alice, "from the other group")
                frames = await r1_stream.wait_for(1)
                assert [f["text"] for f in frames] == ["from the other group"]
                await r1.post("back to the other group", "carol")
                assert len(await bot_posts(tg, OTHER, 1)) == 1
                tg.say(GROUP, alice, "not bridged any more")
                tg.say(OTHER, alice, "again")
                await r1_stream.wait_for(2)
            await lobby_stream.wait_for(4)
            assert [f["text"] for f in lobby_stream.frames] == [
                "before", "from the other group", "back to the other group", "again"]
        log = daemon.log()
        assert log.count("connector agency-tg (telegram) started") == 1, log
        assert len(tg.sent_calls("getMe")) == 1  # the same bot session all along
        assert daemon.terminate() == 0, log
