"""An IRC line the core refuses is skipped with one warning; the channel goes on.

IRC lines are short and carry no ids, so what the core refuses from IRC is a line with
nothing to show: formatting codes only (bold on, bold off), which is no text once read.
Before the IRC connector handed in through ``ctx.hand_in``, such a line was retried
forever and every later line of the channel waited behind it.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from irckit import BOT, Ngircd, UserFactory, bridge_config

from rlkit import Room, running

REFUSED = "skipping a message from #lobby that cannot be stored"


async def test_refused_line_is_skipped_with_a_warning_and_the_next_arrives(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]})
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        async with room.stream() as stream:
            await alice.wait_line(lambda ln: ln.command == "JOIN" and ln.nick == BOT)
            alice.say("#lobby", "first")
            await stream.wait_for(1)
            alice.say("#lobby", "\x02\x02")  # bold on, bold off: no text at all
            alice.say("#lobby", "after the empty one")
            frames = await stream.wait_for(2, timeout=15)
            assert [f["text"] for f in frames] == ["first", "after the empty one"]
        assert daemon.terminate() == 0, daemon.log()
    log = daemon.log()
    assert log.count(REFUSED) == 1, log
    assert "neither text nor an attachment" in log
