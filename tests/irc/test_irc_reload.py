"""A reload that adds one channel and removes another: the bridge parts and joins only
those, on the same connection; a channel that stays is neither left nor joined again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import yaml
from irckit import BOT, Line, Ngircd, UserFactory, bridge_config, wait_until

from rlkit import Room, running, write_config

ZWJ = "\u200d"


def _from_bot(command: str, channel: str | None = None):  # type: ignore[no-untyped-def]
    return lambda ln: ln.command == command and ln.nick == BOT and (
        channel is None or ln.params[0].lower() == channel)


def _bot_lines(lines: list[Line], *commands: str) -> list[tuple[str, str]]:
    return [(ln.command, ln.params[0] if ln.params else "") for ln in lines
            if ln.nick == BOT and ln.command in commands]


async def test_reload_joins_and_parts_only_the_changed_channels(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#keep", "#gone", "#new")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#keep"], "gone": ["#gone"]})
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        await alice.wait_line(_from_bot("JOIN", "#keep"))
        await alice.wait_line(_from_bot("JOIN", "#gone"))
        main = Room(http, port, "lobby-main")
        sent: list[str] = []
        stop = asyncio.Event()

        async def talk() -> None:  # the channel that stays carries traffic all along
            n = 0
            while not stop.is_set():
                await main.post(f"m{n}", "bob")
                sent.append(f"<b{ZWJ}ob> m{n}")
                n += 1
                await asyncio.sleep(0.02)

        load = asyncio.create_task(talk())
        try:
            await asyncio.sleep(0.5)
            mark = len(alice.lines)
            config = yaml.safe_load(path.read_text())
            config["pipes"]["new"] = {"rooms": [{"connector": "api", "room": "lobby-new"},
                                                {"connector": "irc", "room": "#new"}]}
            del config["pipes"]["gone"]
            write_config(path, config)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            await alice.wait_line(_from_bot("JOIN", "#new"))
            await alice.wait_line(_from_bot("PART", "#gone"))
            await wait_until(lambda: "reload done" in daemon.log(), what="the reload")
            assert "connector irc: rooms +#new -#gone (kept its connection)" in daemon.log()

            # the new channel relays both ways at once
            new = Room(http, port, "lobby-new")
            async with new.stream() as stream:
                alice.say("#new", "hello new")
                frames = await stream.wait_for(1)
                assert [(f["author"]["name"], f["text"]) for f in frames] == [
                    ("alice", "hello new")]
            await new.post("back", "carol")
            assert await alice.wait_texts("#new", 1) == [f"<c{ZWJ}arol> back"]
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await load

        # every line for the channel that stayed arrived, once, in order
        await alice.wait_texts("#keep", len(sent))
        assert alice.texts("#keep") == sent
        # nothing but the JOIN of #new and the PART of #gone: no QUIT, no rejoin
        assert sorted(_bot_lines(alice.lines[mark:], "JOIN", "PART", "QUIT", "NICK")) == [
            ("JOIN", "#new"), ("PART", "#gone")]
        # the bridge is no longer in the removed channel
        asked = len(alice.lines)
        alice.send("NAMES #gone")
        await wait_until(lambda: any(ln.command == "366" for ln in alice.lines[asked:]),
                         what="the NAMES of #gone")
        names = " ".join(ln.params[-1] for ln in alice.lines[asked:] if ln.command == "353")
        assert "alice" in names and BOT not in names
        log = daemon.log()
        assert log.count("IRC: connected to") == 1, log
        assert log.count("connector irc (irc) started") == 1, log
        assert daemon.terminate() == 0, log
