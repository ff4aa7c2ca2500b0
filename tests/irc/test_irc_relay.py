"""IRC <-> API through the real roomlink process and a real ngIRCd."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml
from irckit import BOT, IrcUser, Ngircd, UserFactory, bridge_config

from rlkit import Room, running

ZWJ = "\u200d"


def bot_joined(channel: str):  # type: ignore[no-untyped-def]
    return lambda ln: ln.command == "JOIN" and ln.nick == BOT and ln.params[0] == channel


async def test_irc_channel_and_api_room_talk_both_ways(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    carol = await irc_user("carol", "#lobby")  # an ignored bot: never relayed
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]}, ignore_nicks=["Carol"])
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        async with room.stream() as stream:
            await alice.wait_line(bot_joined("#lobby"))
            carol.say("#lobby", "beep")
            alice.say("#lobby", "hello from *IRC* \x02bold\x02 \x0304red\x03")
            alice.send("PRIVMSG #lobby :\x01ACTION waves\x01")
            frames = await stream.wait_for(2)
            assert [(f["author"]["name"], f["kind"], f["text"]) for f in frames] == [
                ("alice", "message", "hello from \\*IRC\\* **bold** red"),
                ("alice", "action", "waves"),
            ]
            assert frames[0]["author"] == {"name": "alice", "party": "agency",
                                           "platform": "irc"}

            await room.post("hi **alice**, see [docs](https://example.org/d)", "bob")
            await room.post("alice", "alice")  # same nick on both sides: must not ping
            texts = await alice.wait_texts("#lobby", 2)
            assert texts[0] == "<b" + ZWJ + "ob> hi \x02alice\x02, see docs (https://example.org/d)"
            assert texts[1] == "<a" + ZWJ + "lice> alice"
            assert all(ln.nick == BOT for ln in alice.privmsgs("#lobby"))
            # the bridge's own lines are not relayed back to the API room
            alice.say("#lobby", "last")
            frames = await stream.wait_for(3)
            assert [f["text"] for f in frames] == [frames[0]["text"], "waves", "last"]
        assert daemon.terminate() == 0, daemon.log()


async def test_two_channels_of_one_server_in_one_pipe(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#one")
    dave = await irc_user("dave", "#Two")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#one", "#Two"]})
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        async with room.stream() as stream:
            await alice.wait_line(bot_joined("#one"))
            await dave.wait_line(lambda ln: ln.command == "JOIN" and ln.nick == BOT)
            alice.say("#one", "from one")
            assert await dave.wait_texts("#two", 1) == [f"<a{ZWJ}lice> from one"]
            dave.say("#two", "from two")  # another case than in the config: same channel
            assert await alice.wait_texts("#one", 1) == [f"<d{ZWJ}ave> from two"]
            await room.post("to both", "erin")
            assert (await alice.wait_texts("#one", 2))[1] == f"<e{ZWJ}rin> to both"
            assert (await dave.wait_texts("#two", 2))[1] == f"<e{ZWJ}rin> to both"
            frames = await stream.wait_for(2)
            assert [(f["author"]["name"], f["text"]) for f in frames] == [
                ("alice", "from one"), ("dave", "from two")]
            assert len(alice.texts("#one")) == 2 and len(dave.texts("#two")) == 2
        assert daemon.terminate() == 0, daemon.log()


async def test_long_and_multi_line_messages_arrive_whole_in_legal_lines(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]}, max_lines=100)
    words = [f"wörd{i}€😀" for i in range(250)]
    long_text = " ".join(words)
    assert len(long_text) >= 2000
    multi = "first line\nsecond **bold** line\n\nthird line after a blank"
    author = "bob-with-a-rather-long-name"
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        async with room.stream() as stream:
            await alice.wait_line(bot_joined("#lobby"))
            await room.post(long_text, author)
            await room.post(multi, author)
            await room.post("after", author)
            shown = no_ping(author)
            texts = await alice.wait_texts("#lobby", 1)
            await alice.wait_line(lambda ln: ln.command == "PRIVMSG" and ln.params[1].endswith(
                "> after"))
            raws = [ln.raw for ln in alice.privmsgs("#lobby")]
            texts = alice.texts("#lobby")
            for raw in raws:
                assert len(raw) <= 512, raw
                raw.decode("utf-8")  # strict: no character was cut in half
            assert max(len(r) for r in raws) > 450  # the budget is used, not wasted
            assert all(t.startswith(f"<{shown}> ") for t in texts)
            bodies = [t.removeprefix(f"<{shown}> ") for t in texts]
            assert bodies[-4:] == ["first line", "second \x02bold\x02 line",
                                   "third line after a blank", "after"]
            assert " ".join(bodies[:-4]) == long_text  # all of it, in order
            assert len(bodies) - 4 >= 5

            # and the other way: a full IRC line, and one that is not UTF-8
            line = "ü" * 200 + " end"
            alice.say("#lobby", line)
            alice.send_bytes(b"PRIVMSG #lobby :caf\xe9 cr\xe8me\r\n")
            frames = await stream.wait_for(2)
            assert [f["text"] for f in frames] == [line, "café crème"]
        assert daemon.terminate() == 0, daemon.log()


async def test_cr_lf_in_a_message_injects_nothing(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]})
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        await alice.wait_line(bot_joined("#lobby"))
        await room.post("evil\r\nQUIT :pwned\r\nPRIVMSG #lobby :injected", "mallory")
        await room.post("one\rQUIT\x00 two", "mallory")
        await room.post("hi", "m\r\nQUIT :x\r\n")
        await room.post("still here", "bob")
        texts = await alice.wait_texts("#lobby", 4)
        mallory = f"<{no_ping('mallory')}> "
        assert texts == [
            mallory + "evil QUIT :pwned PRIVMSG #lobby :injected",  # one line, as said
            mallory + "one QUIT\ufffd two",  # the core stores NUL as U+FFFD
            f"<m{ZWJ}QUIT :x> hi",  # the author is defanged too
            f"<{no_ping('bob')}> still here",
        ]
        from_bot = [ln for ln in alice.lines if ln.nick == BOT]
        assert [ln.command for ln in from_bot] == ["JOIN"] + ["PRIVMSG"] * 4  # no QUIT
        assert all(ln.params[0] == "#lobby" for ln in from_bot)
        assert daemon.terminate() == 0, daemon.log()


async def test_nick_taken_at_connect_uses_an_alternate(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    squatter = await irc_user(BOT, "#lobby")
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]}, alt_nicks=["rlbot_alt"])
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        async with room.stream() as stream:
            await alice.wait_line(lambda ln: ln.command == "JOIN" and ln.nick == "rlbot_alt")
            await room.post("hello", "bob")
            assert await alice.wait_texts("#lobby", 1, sender="rlbot_alt") == [
                f"<{no_ping('bob')}> hello"]
            squatter.say("#lobby", "I am the real rlbot")
            frames = await stream.wait_for(1)
            assert frames[0]["author"]["name"] == BOT
            assert frames[0]["text"] == "I am the real rlbot"
        assert daemon.terminate() == 0, daemon.log()


def no_ping(nick: str) -> str:
    return nick[0] + ZWJ + nick[1:]


async def test_joins_parts_and_topics_only_where_the_pipe_asks(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    path, port = bridge_config(tmp_path, ngircd, {"events": ["#events"], "quiet": ["#quiet"]})
    config = yaml.safe_load(path.read_text())
    config["pipes"]["events"].update(join_part=True, topic=True)
    path.write_text(yaml.safe_dump(config))
    op = await irc_user("op", "#events", "#quiet")
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        events = Room(http, port, "lobby-events").stream()
        quiet = Room(http, port, "lobby-quiet").stream()
        async with events, quiet:
            await op.wait_line(bot_joined("#events"))
            await op.wait_line(bot_joined("#quiet"))
            zoe = await irc_user("zoe", "#events", "#quiet")
            # the server orders what different clients say only as it reads it: wait for
            # each client's lines to come back before another client speaks
            op.send("TOPIC #events :new *topic*")
            op.send("TOPIC #quiet :quiet topic")
            await op.wait_line(lambda ln: ln.command == "TOPIC" and ln.params[0] == "#quiet")
            zoe.send("NICK zoe2")
            zoe.send("PART #events :bye now")
            await zoe.close()  # QUIT: she is still in #quiet, so nothing for #events
            await op.wait_line(lambda ln: ln.command == "QUIT" and ln.nick == "zoe2")
            op.say("#quiet", "done")
            op.say("#events", "done")
            got = await events.wait_for(5)
            assert [(f["kind"], f["author"]["name"], f["text"]) for f in got] == [
                ("join", "zoe", "joined"),
                ("topic", "op", "new \\*topic\\*"),
                ("join", "zoe2", "zoe is now known as zoe2"),
                ("part", "zoe2", "left (bye now)"),
                ("message", "op", "done"),
            ]
            assert [(f["kind"], f["text"]) for f in await quiet.wait_for(1)] == [
                ("message", "done")]
        assert daemon.terminate() == 0, daemon.log()


async def test_server_password_and_channel_key(tmp_path: Path, irc_user: UserFactory) -> None:
    ircd = Ngircd(tmp_path / "locked", channels={"#vault": "sesame"}, password="letmein")
    await ircd.start()
    try:
        alice = IrcUser(ircd.port, "alice")
        await alice.connect(password="letmein")
        await alice.join("#vault", "sesame")
        path, port = bridge_config(tmp_path, ircd, {"main": ["#vault"]}, password="letmein",
                                   channel_keys={"#VAULT": "sesame"})
        async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
            await alice.wait_line(bot_joined("#vault"))
            await Room(http, port, "lobby-main").post("in", "bob")
            assert await alice.wait_texts("#vault", 1) == [f"<{no_ping('bob')}> in"]
            assert daemon.terminate() == 0, daemon.log()
        assert "letmein" not in daemon.log() and "sesame" not in daemon.log()
        await alice.close()
    finally:
        ircd.stop()
