"""The XMPP connector through a Prosody restart, over STARTTLS and direct TLS, and with a
wrong password."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from bridgekit import ROOM, bridge
from xmppkit import BRIDGE_NICK, Person, Prosody

from conformance import wait_until
from rlkit import Daemon, free_port, write_config


async def test_a_prosody_restart_loses_nothing(tmp_path: Path, prosody: Prosody) -> None:
    """Messages for the room wait while the server is down and go out in order once the
    bridge is back in; what the room says meanwhile arrives, once."""
    async with bridge(tmp_path, prosody) as b:
        alice = await Person.join(prosody, ROOM, "alice")
        await alice.say("before the restart")
        await b.wait_frames(1)
        await b.api.post("first of the conversation", "bob")
        await b.wait_bodies(1)

        prosody.stop(keep=True)  # every connection drops
        for n in range(1, 4):
            await b.api.post(f"while the server was down {n}", "bob")
        await asyncio.sleep(1.0)
        await prosody.start()
        # people come back first; alice speaks before the bridge may be in again
        alice = await Person.join(prosody, ROOM, "alice")
        await alice.say("right after the restart")
        witness = await Person.join(prosody, ROOM, "witness", history=50)
        await b.wait_frames(2, timeout=60)

        def from_bridge() -> list[str]:  # history and live alike, each message once
            seen = {s.stanza_id: s.body for s in witness.seen if s.nick == BRIDGE_NICK}
            return list(seen.values())

        await wait_until(lambda: len(from_bridge()) >= 4, 60, lambda: str(from_bridge()))
        await alice.say("later on")
        await b.wait_frames(3)
        await asyncio.sleep(1.5)  # a second copy would have come by now
        assert from_bridge() == ["<bob> first of the conversation"] + [
            f"<bob> while the server was down {n}" for n in range(1, 4)]
        assert [f["text"] for f in b.frames()] == [
            "before the restart", "right after the restart", "later on"]
        await alice.leave()
        await witness.leave()


async def test_a_server_gone_silent_is_left_and_reconnected(tmp_path: Path,
                                                             prosody: Prosody) -> None:
    """Prosody frozen (SIGSTOP): the connection stays open but nothing answers; the
    bridge's ping finds it dead, and once the server is back the waiting message goes out."""
    options = {"ping_interval": 1.0, "ping_timeout": 1.0}
    async with bridge(tmp_path, prosody, options) as b:
        assert prosody.proc is not None
        prosody.proc.send_signal(signal.SIGSTOP)
        try:
            await wait_until(lambda: "did not answer a ping" in b.daemon.log(), 20,
                             lambda: b.daemon.log()[-2000:])
            await b.api.post("said while the server was frozen", "bob")
        finally:
            prosody.proc.send_signal(signal.SIGCONT)
        witness = await Person.join(prosody, ROOM, "witness", history=10)
        await wait_until(lambda: any(s.body == "<bob> said while the server was frozen"
                                     for s in witness.seen), 60,
                         lambda: str([s.body for s in witness.seen]))
        await witness.leave()


@pytest.mark.parametrize("tls", ["starttls", "direct"])
async def test_tls_with_a_self_signed_certificate(tmp_path: Path, tls: str) -> None:
    server = Prosody(tls=True)  # encryption required; the bridge runs with tls_verify: false
    await server.start()
    try:
        async with bridge(tmp_path, server, server.bridge_options(tls)) as b:
            alice = await Person.join(server, ROOM, "alice")
            await alice.say("over TLS")
            [frame] = await b.wait_frames(1)
            assert frame["text"] == "over TLS"
            await b.api.post("back over TLS", "bob")
            assert await b.wait_bodies(1) == ["<bob> back over TLS"]
            await alice.leave()
    finally:
        server.stop()


async def test_a_wrong_password_is_logged_and_retried(tmp_path: Path, prosody: Prosody) -> None:
    secret = "not-the-password-7c1f"
    port = free_port()
    config = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": f"sqlite:///{tmp_path / 'agency'}.db"}},
        "connectors": {
            "chat": {"party": "agency", "type": "xmpp", **prosody.bridge_options(),
                     "password": secret, "reconnect_initial": 0.2, "reconnect_max": 0.5},
            "web": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"}},
        "pipes": {"p": {"rooms": [{"connector": "chat", "room": ROOM},
                                  {"connector": "web", "room": "lobby"}]}},
    })
    daemon = Daemon(config, [port])
    await daemon.start()
    try:
        refused = "the server refused the login of bridge@localhost"
        await wait_until(lambda: daemon.log().count(refused) >= 2, 30,
                         lambda: daemon.log()[-3000:])  # it keeps trying, with backoff
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert secret not in daemon.log()
    finally:
        daemon.cleanup()
