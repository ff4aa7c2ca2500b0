"""``roomlink outbox list|retry`` against a real IRC server that refuses the bridge.

The channel is moderated (+m), so the server refuses every line of the bridge until an
operator lifts it: the copies fail for good. After the fix, ``outbox retry`` puts them
back; a running daemon delivers them within seconds, once, in their original order, and
a stopped one at its next start.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import yaml
from irckit import BOT, IrcUser, Ngircd, UserFactory, bridge_config

from rlkit import Daemon, Room, run_cli, running, write_config

ZWJ = "\u200d"
BOB = f"<b{ZWJ}ob> "


def joined(nick: str, channel: str):  # type: ignore[no-untyped-def]
    return lambda ln: ln.command == "JOIN" and ln.nick == nick and ln.params[0] == channel


def config(tmp_path: Path, ircd: Ngircd) -> tuple[Path, int]:
    path, port = bridge_config(tmp_path, ircd, {"main": ["#ops"]})
    cfg = yaml.safe_load(path.read_text())
    cfg["delivery"] = {"max_attempts": 2, "backoff_initial": 0.05, "backoff_max": 0.1}
    return write_config(path, cfg), port


def outbox(path: Path, *args: str) -> list[list[str]]:
    done = run_cli("outbox", *args, "-c", str(path), "--party", "agency")
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


async def wait_failed(path: Path, count: int, timeout: float = 30) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = outbox(path, "list")
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {count} copies failed: {rows}"
        await asyncio.sleep(0.2)


async def test_retry_redelivers_failed_copies_once_in_order(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    op: IrcUser = await irc_user("oper", "#ops")  # first in: the channel operator
    op.send("MODE #ops +m")  # the bridge may not speak here
    path, port = config(tmp_path, ngircd)
    async with running(path, [port]) as daemon, aiohttp.ClientSession() as http:
        room = Room(http, port, "lobby-main")
        await op.wait_line(joined(BOT, "#ops"))
        ids = [(await room.post(f"refused {i}", "bob"))["id"] for i in range(3)]

        rows = await wait_failed(path, 3)
        assert [r[0] for r in rows] == ids  # the id the API returned, oldest first
        for row in rows:
            _, where, state, error = row
            assert (where, state) == ("irc:#ops", "failed")
            assert error.startswith("gave up after 2 attempts") and "refused" in error
        assert outbox(path, "list", "--room", "#ops", "--state", "pending") == []
        assert op.texts("#ops") == []

        op.send("MODE #ops -m")  # the operator fixes the cause
        await op.wait_line(lambda ln: ln.command == "MODE" and ln.params[1:] == ["-m"])
        one = outbox(path, "retry", "--room", "irc:#ops", "--id", ids[1])
        assert one == [["1 failed copy of party agency back in the queue: a running "
                        "roomlink delivers them within seconds, a stopped one at its next start"]]
        texts = await op.wait_texts("#ops", 1, timeout=10)
        assert texts == [f"{BOB}refused 1"]
        done = run_cli("outbox", "retry", "-c", str(path), "--party", "agency")
        assert done.returncode == 0 and done.stdout.startswith("2 failed copies"), done.stderr
        texts = await op.wait_texts("#ops", 3, timeout=10)
        assert texts == [f"{BOB}refused 1", f"{BOB}refused 0", f"{BOB}refused 2"]
        await room.post("after the fix", "bob")
        await op.wait_texts("#ops", 4)
        await asyncio.sleep(1.0)  # nothing more arrives: each copy once
        assert op.texts("#ops")[3:] == [f"{BOB}after the fix"]
        assert outbox(path, "list") == []
        delivered = outbox(path, "list", "--state", "delivered")
        assert [r[0] for r in delivered][:3] == ids

        # a copy that failed while the daemon ran is retried while it is stopped
        op.send("MODE #ops +m")
        await op.wait_line(lambda ln: ln.command == "MODE" and ln.params[1:] == ["+m"])
        late = (await room.post("failed before a restart", "bob"))["id"]
        assert [r[0] for r in await wait_failed(path, 1)] == [late]
        assert daemon.terminate() == 0
    op.send("MODE #ops -m")
    done = run_cli("outbox", "retry", "-c", str(path), "--party", "agency", "--id", late)
    assert done.returncode == 0 and done.stdout.startswith("1 failed copy")
    assert outbox(path, "list", "--state", "pending")[0][:3] == [late, "irc:#ops", "pending"]
    restarted = Daemon(path, [port])
    await restarted.start()
    try:
        texts = await op.wait_texts("#ops", 5, timeout=20)
        assert texts[4] == f"{BOB}failed before a restart"
        assert restarted.terminate() == 0
    finally:
        restarted.cleanup()


def test_outbox_commands_explain_bad_input(tmp_path: Path) -> None:
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"}},
        "connectors": {"api": {"party": "agency", "type": "api", "listen": "127.0.0.1:1"}},
        "pipes": {"p": {"rooms": [{"connector": "api", "room": "a"},
                                  {"connector": "api", "room": "b"}]}},
    })
    done = run_cli("outbox", "list", "-c", str(path), "--party", "agncy")
    assert done.returncode == 2 and "did you mean 'agency'" in done.stderr
    done = run_cli("outbox", "retry", "-c", str(path), "--party", "agency")
    assert done.returncode == 0 and "no failed copies" in done.stdout
    done = run_cli("outbox", "list", "-c", str(path), "--party", "agency", "--state", "nope")
    assert done.returncode == 2
