"""A reload that changes the mail room's recipients: the IMAP session stays, mail goes to
the new recipients at once, and only they are heard."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import yaml
from mailpeer import MailServer, new_mail
from test_email_relay import ALICE, bridge

from rlkit import write_config

DAVE = "dave@test.local"


async def test_reload_changes_recipients_without_reconnecting(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server) as (daemon, api, stream):
        await api.post("before", "bob")
        await mail_server.wait_mails("alice", 1)
        path = tmp_path / "roomlink.yaml"
        config = yaml.safe_load(path.read_text())
        config["pipes"]["deal"]["rooms"][0]["room"] = DAVE
        write_config(path, config)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        for _ in range(600):
            if "reload done" in daemon.log():
                break
            await asyncio.sleep(0.05)
        assert f"connector mail: rooms +{DAVE} " in daemon.log()
        assert "(kept its connection)" in daemon.log()

        await api.post("after", "bob")
        assert [m["Subject"] for m in await mail_server.wait_mails("dave", 1)] == [
            "[deal] conversation"]
        await mail_server.send(new_mail(ALICE, "alice is no longer in the room"))
        await mail_server.send(new_mail(DAVE, "dave is", name="Dave"))
        frames = await stream.wait_for(1)
        await asyncio.sleep(0.5)
        assert [(f["author"]["name"], f["text"]) for f in frames] == [("Dave", "dave is")]
        assert len(mail_server.mails("alice")) == 1  # nothing after the reload
        log = daemon.log()
        assert f"from {ALICE} not relayed: sender not allowed" in log
        assert log.count("IMAP 127.0.0.1") == 1, log  # one IMAP session all along
        assert log.count("connector mail (email) started") == 1, log
        assert daemon.terminate() == 0, log
