"""The IRC connector when the server misbehaves: dies, floods us back, kicks us."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import aiohttp
from irckit import BOT, IrcUser, Ngircd, UserFactory, bridge_config, wait_until

from rlkit import Room, running

ZWJ = "\u200d"


def joined(nick: str, channel: str):  # type: ignore[no-untyped-def]
    return lambda ln: ln.command == "JOIN" and ln.nick == nick and ln.params[0] == channel


async def test_server_killed_and_restarted_mid_conversation(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]},
                               ping_interval=2, ping_timeout=2)
    bob = f"<b{ZWJ}ob> "
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        async with room.stream() as stream:
            await alice.wait_line(joined(BOT, "#lobby"))
            for i in range(5):
                await room.post(f"before {i}", "bob")
            assert await alice.wait_texts("#lobby", 5) == [f"{bob}before {i}" for i in range(5)]
            alice.say("#lobby", "irc before")
            await stream.wait_for(1)

            ngircd.kill()
            await alice.close()
            for i in range(5):  # accepted while IRC is down: they wait in the outbox
                await room.post(f"queued {i}", "bob")

            # back with a password the bridge lacks, so that a human is in first
            ngircd.password = "letmein"
            await ngircd.start()
            alice = IrcUser(ngircd.port, "alice")
            await alice.connect(password="letmein")
            await alice.join("#lobby")
            ngircd.password = None
            ngircd.write_config()
            assert ngircd.proc is not None
            ngircd.proc.send_signal(signal.SIGHUP)  # rehash: the bridge may come in now

            await alice.wait_line(joined(BOT, "#lobby"), timeout=30)
            await room.post("after", "bob")
            texts = await alice.wait_texts("#lobby", 6)
            assert texts == [f"{bob}queued {i}" for i in range(5)] + [f"{bob}after"]
            alice.say("#lobby", "irc after")
            frames = await stream.wait_for(2)
            assert [f["text"] for f in frames] == ["irc before", "irc after"]
            await alice.close()
        assert daemon.terminate() == 0, daemon.log()
    assert "reconnecting" in daemon.log()


async def test_a_burst_of_50_under_flood_control_arrives_in_order(
    tmp_path: Path, irc_user: UserFactory
) -> None:
    # the server's default flood control; the bridge's default pacing (4 lines, then 1/s)
    ircd = Ngircd(tmp_path / "flood", penalties=True)
    await ircd.start()
    try:
        alice = await irc_user("alice", "#lobby", port=ircd.port)
        path, port = bridge_config(tmp_path, ircd, {"main": ["#lobby"]},
                                   line_interval=1.0, burst_lines=4)
        async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
            room = Room(http, port, "lobby-main")
            await alice.wait_line(joined(BOT, "#lobby"))
            started = time.monotonic()
            for i in range(50):
                await room.post(f"flood {i}", "bob")
            texts = await alice.wait_texts("#lobby", 50, timeout=90)
            took = time.monotonic() - started
            assert texts == [f"<b{ZWJ}ob> flood {i}" for i in range(50)]
            assert took > 40, "lines were not paced"
            bot_lines = [ln for ln in alice.lines if ln.nick == BOT]
            assert [ln.command for ln in bot_lines].count("JOIN") == 1, "the bot reconnected"
            assert not any(ln.command == "QUIT" for ln in bot_lines), "the bot was killed"
            assert "Excess Flood" not in ircd.log()
            assert daemon.terminate() == 0, daemon.log()
    finally:
        ircd.stop()


async def test_kicked_bot_rejoins_and_delivers(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    op = await irc_user("op", "#ops")  # the first in a channel is its operator
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#ops"]})
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        await op.wait_line(joined(BOT, "#ops"))
        op.send(f"KICK #ops {BOT} :go away")
        await op.wait_line(lambda ln: ln.command == "KICK")
        await room.post("while kicked", "bob")
        await wait_until(lambda: sum(1 for ln in op.lines if ln.command == "JOIN"
                                     and ln.nick == BOT) == 2, what="a rejoin")
        assert await op.wait_texts("#ops", 1) == [f"<b{ZWJ}ob> while kicked"]
        assert daemon.terminate() == 0, daemon.log()


async def test_silent_server_is_detected_by_ping(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]},
                               ping_interval=0.5, ping_timeout=1)
    async with running(path, [port]) as daemon:
        await alice.wait_line(joined(BOT, "#lobby"))
        assert ngircd.proc is not None
        ngircd.proc.send_signal(signal.SIGSTOP)  # the socket stays open; nothing answers
        try:
            await wait_until(lambda: "no answer from the server" in daemon.log(), timeout=15,
                             what="the ping timeout")
        finally:
            ngircd.proc.send_signal(signal.SIGCONT)
        # the old session may linger on the server a moment: an alternate nick is fine
        await wait_until(lambda: sum(1 for ln in alice.lines if ln.command == "JOIN"
                                     and ln.nick.startswith(BOT)) == 2, what="a rejoin")
        assert daemon.terminate() == 0, daemon.log()


async def test_tls_with_and_without_certificate_checks(tmp_path: Path,
                                                       irc_user: UserFactory) -> None:
    ircd = Ngircd(tmp_path / "tls", tls=True)
    await ircd.start()
    try:
        alice = await irc_user("alice", "#lobby", port=ircd.port)
        path, port = bridge_config(tmp_path, ircd, {"main": ["#lobby"]}, port=ircd.tls_port,
                                   tls=True, tls_verify=False)
        async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
            await alice.wait_line(joined(BOT, "#lobby"))
            await Room(http, port, "lobby-main").post("over tls", "bob")
            assert await alice.wait_texts("#lobby", 1) == [f"<b{ZWJ}ob> over tls"]
            assert daemon.terminate() == 0, daemon.log()

        # the certificate is self-signed: with checks on (the default) the bridge stays out
        path, port = bridge_config(tmp_path, ircd, {"main": ["#lobby"]}, port=ircd.tls_port,
                                   tls=True, nick="rlcheck")
        async with running(path, [port]) as daemon:
            await wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in daemon.log(), timeout=15,
                             what="a refused certificate")
            assert not any(ln.nick == "rlcheck" for ln in alice.lines)
            assert daemon.terminate() == 0, daemon.log()
    finally:
        ircd.stop()
