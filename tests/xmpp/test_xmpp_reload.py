"""A reload that adds a MUC to the pipe, then removes the first one: the XMPP session
stays; the bridge joins the added room and leaves the removed one, and nothing else."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml
from bridgekit import ROOM, bridge
from xmppkit import BRIDGE_NICK, MUC, Person, Prosody

from conformance import wait_until
from rlkit import write_config

OTHER = f"other@{MUC}"


async def _reload(b: Any, rooms: list[dict[str, str]], count: int) -> None:
    config = yaml.safe_load(b.daemon.config.read_text())
    config["pipes"]["p"]["rooms"] = rooms
    write_config(b.daemon.config, config)
    assert b.daemon.proc is not None
    b.daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: b.daemon.log().count("reload done") >= count, 30,
                     lambda: "the reload")


async def test_reload_joins_and_leaves_only_the_changed_rooms(tmp_path: Path,
                                                             prosody: Prosody) -> None:
    olga = await Person.join(prosody, OTHER, "olga")
    try:
        async with bridge(tmp_path, prosody) as b:
            comings: list[tuple[str, str]] = []  # (nick, presence type) in ROOM
            b.watcher.add_event_handler(
                f"muc::{ROOM}::presence",
                lambda p: comings.append((p["from"].resource, p["type"])))
            web = {"connector": "web", "room": "lobby"}
            first, other = {"connector": "chat", "room": ROOM}, {"connector": "chat",
                                                                  "room": OTHER}
            await _reload(b, [first, web, other], 1)
            assert f"connector chat: rooms +{OTHER} (kept its connection)" in b.daemon.log()
            muc = olga.plugin["xep_0045"]
            await wait_until(lambda: BRIDGE_NICK in muc.get_roster(OTHER), 30,
                             lambda: "the bridge in the added room")
            await b.api.post("to both rooms", "carol")
            assert (await b.wait_bodies(1))[0].endswith("to both rooms")
            await olga.wait_for(lambda s: s.nick == BRIDGE_NICK and "to both rooms" in s.body)
            await olga.say("from the other room")
            frames = await b.wait_frames(1)
            assert [(f["author"]["name"], f["text"]) for f in frames] == [
                ("olga", "from the other room")]
            assert (await b.wait_bodies(2))[1].endswith("from the other room")
            assert [c for c in comings if c[0] == BRIDGE_NICK] == []  # never left, nor came

            await _reload(b, [web, other], 2)
            assert f"connector chat: rooms -{ROOM} (kept its connection)" in b.daemon.log()
            await wait_until(lambda: (BRIDGE_NICK, "unavailable") in comings, 30,
                             lambda: "the bridge leaving the removed room")
            await b.watcher.say("not bridged any more")
            await olga.say("still bridged")
            frames = await b.wait_frames(2)
            assert [f["text"] for f in frames] == ["from the other room", "still bridged"]
            log = b.daemon.log()
            assert log.count("logged in as") == 1, log
            assert log.count("connector chat (xmpp) started") == 1, log
            assert b.daemon.terminate() == 0, log
    finally:
        await olga.leave()
