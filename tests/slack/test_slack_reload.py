"""A reload that adds a Slack channel to the pipe and removes another: the Socket Mode
connection stays, the added channel relays at once, the removed one no longer does."""

from __future__ import annotations

import signal
from pathlib import Path

import yaml
from slackkit import ALICE, LOBBY, PRIVATE, SlackServer, bridged

from rlkit import write_config


async def test_reload_changes_channels_without_reconnecting(tmp_path: Path,
                                                           slack: SlackServer) -> None:
    async with bridged(tmp_path, slack, extra_rooms=["C0GENERAL"]) as (daemon, room, stream):
        slack.say(LOBBY, ALICE, "before")
        await stream.wait_for(1)
        path = tmp_path / "roomlink.yaml"
        config = yaml.safe_load(path.read_text())
        rooms = config["pipes"]["p"]["rooms"]
        rooms[:] = [r for r in rooms if r["room"] != "C0GENERAL"]
        rooms.append({"connector": "agency-slack", "room": "#secret"})
        write_config(path, config)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        await slack.wait(lambda: "reload done" in daemon.log(), what="the reload")
        assert ("connector agency-slack: rooms +#secret -C0GENERAL (kept its connection)"
                in daemon.log())

        # the added channel, found by its name, relays both ways
        await room.post("to both channels", "carol")
        assert (await slack.wait_posts(PRIVATE, 1))[0]["text"] == "to both channels"
        assert (await slack.wait_posts(LOBBY, 1))[0]["text"] == "to both channels"
        slack.say(PRIVATE, ALICE, "from the secret channel")
        slack.say("C0GENERAL", ALICE, "not bridged any more")
        slack.say(LOBBY, ALICE, "after")
        frames = await stream.wait_for(3)
        assert [f["text"] for f in frames] == ["before", "from the secret channel", "after"]
        # the removed channel got only what was said before the reload
        assert [m["text"] for m in slack.history("C0GENERAL")] == ["before"]
        assert slack.connections == 1  # Socket Mode never reconnected
        log = daemon.log()
        assert log.count("connector agency-slack (slack) started") == 1, log
        assert daemon.terminate() == 0, log
