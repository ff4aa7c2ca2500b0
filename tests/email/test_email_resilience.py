"""The email connector when things go wrong: Dovecot restarts, crashes, refusals, no IDLE."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mailpeer import MailServer, new_mail
from test_email_relay import ALICE, bridge, plain

from rlkit import export


async def test_dovecot_restart_while_mail_arrives_loses_and_doubles_nothing(
    tmp_path: Path, mail_server: MailServer
) -> None:
    assert mail_server.tap is not None
    async with bridge(tmp_path, mail_server) as (daemon, _, stream):
        await mail_server.send(new_mail(ALICE, "before the restart", "Alice"))
        await stream.wait_for(1)
        mail_server.stop_dovecot()
        mail_server.tap.drop_connections()
        for i in range(3):  # delivered into the Maildir while IMAP is down
            await mail_server.send(new_mail(ALICE, f"while down {i}", "Alice"))
        await asyncio.sleep(1.0)
        assert len(stream.frames) == 1
        await mail_server.start_dovecot()
        await mail_server.send(new_mail(ALICE, "after the restart", "Alice"))
        # back within seconds of the server (reconnect_max is 2 s), not after a timeout
        await stream.wait_for(5, timeout=15)
        await asyncio.sleep(1.5)  # a double would have come by now
        assert [f["text"] for f in stream.frames] == [
            "before the restart", "while down 0", "while down 1", "while down 2",
            "after the restart"]
        assert "IMAP reconnecting" in daemon.log()
        assert daemon.terminate() == 0, daemon.log()


async def test_kill_after_fetch_before_store_delivers_once(
    tmp_path: Path, mail_server: MailServer
) -> None:
    assert mail_server.tap is not None
    async with bridge(tmp_path, mail_server) as (daemon, _, stream):
        await mail_server.send(new_mail(ALICE, "warm-up", "Alice"))
        await stream.wait_for(1)
        mail = new_mail(ALICE, "said just before a crash", "Alice")
        await mail_server.send(mail)
        await mail_server.tap.wait_sent(str(mail["Message-ID"]))  # the bridge has fetched it
        daemon.kill()
        await daemon.start()
        await stream.wait_for(2, timeout=30)
        await asyncio.sleep(1.5)
        texts = [f["text"] for f in stream.frames]
        assert texts.count("said just before a crash") >= 1
        ids = {f["id"] for f in stream.frames if f["text"] == "said just before a crash"}
        assert len(ids) == 1  # at most a resend of the same message, never a new one
        for party in ("agency", "acme"):
            assert [m["text"] for m in export(daemon.config, party, "deal")] == [
                "warm-up", "said just before a crash"]
        assert daemon.terminate() == 0, daemon.log()


async def test_refused_recipients_fail_for_good_with_the_servers_reply(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server, room="refuse@test.local") as (daemon, api, _):
        await api.post("to nobody", "bob")
        await daemon.wait_log("marked failed")
        log = daemon.log()
        assert "refuse@test.local: 550 5.1.1" in log
        assert "Recipient address rejected: User unknown" in log
        assert "retry" not in log  # a 5xx is not retried
        assert daemon.terminate() == 0, daemon.log()
    # one recipient refused, one accepted: the mail goes out, the refusal is logged
    (tmp_path / "two").mkdir()
    async with bridge(tmp_path / "two", mail_server, room=f"refuse@test.local, {ALICE}") as (
            daemon, api, _):
        await api.post("to some", "bob")
        [mail] = await mail_server.wait_mails("alice", 1)
        assert plain(mail) == "to some"
        await daemon.wait_log("not accepted for refuse@test.local: 550")
        assert daemon.terminate() == 0, daemon.log()


async def test_one_smtp_connection_serves_many_mails_and_a_dropped_one_is_replaced(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server, room=ALICE) as (daemon, api, _):
        before = mail_server.smtp_connections()
        for i in range(5):
            await api.post(f"mail {i}", "bob")
        mails = await mail_server.wait_mails("alice", 5)
        assert sorted(plain(m) for m in mails) == [f"mail {i}" for i in range(5)]
        assert mail_server.smtp_connections() - before == 1  # no handshake, login per mail
        # the server goes away and comes back: the kept connection is dead, and is
        # noticed before a mail is sent on it (no failed attempt, nothing sent twice)
        await mail_server.restart_smtp()
        before = mail_server.smtp_connections()
        await api.post("after the restart", "bob")
        mails = await mail_server.wait_mails("alice", 6)
        assert sorted(plain(m) for m in mails)[0] == "after the restart"
        assert mail_server.smtp_connections() - before == 1
        await asyncio.sleep(0.5)
        assert len(mail_server.mails("alice")) == 6
        assert "send failed" not in daemon.log()
        assert daemon.terminate() == 0, daemon.log()


async def test_a_providers_rate_limit_is_waited_out_without_using_up_attempts(
    tmp_path: Path, mail_server: MailServer
) -> None:
    """The server answers "451 4.7.1 sending rate exceeded" twice: with max_attempts 1 an
    ordinary failure would mark the copy failed at once; a rate limit is waited out."""
    async with bridge(tmp_path, mail_server, room="slow@test.local", rate_limit_wait=0.3,
                      delivery={"max_attempts": 1}) as (daemon, api, _):
        await api.post("worth the wait", "bob")
        [mail] = await mail_server.wait_mails("slow", 1)
        assert plain(mail) == "worth the wait"
        log = daemon.log()
        assert log.count("rate limited") == 2 and "451 4.7.1" in log
        assert "marked failed" not in log
        await asyncio.sleep(0.5)
        assert len(mail_server.mails("slow")) == 1
        assert daemon.terminate() == 0, daemon.log()


async def test_batch_seconds_makes_one_mail_and_survives_a_crash(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server, room=ALICE, batch_seconds=2.0) as (
            daemon, api, _):
        await api.post("first", "bob")
        await api.post("second, **bold**", "carl")
        await wait_until_delivered(daemon.config, 2)
        daemon.kill()  # within the window: both are delivered as far as the core knows
        await daemon.start()
        [mail] = await mail_server.wait_mails("alice", 1, timeout=20)
        assert plain(mail) == "*bob:*\nfirst\n\n*carl:*\nsecond, *bold*"
        assert mail["From"].addresses[0].display_name == "bob via agency, carl via agency"
        await api.post("later", "bob")
        mails = await mail_server.wait_mails("alice", 2)
        assert plain(mails[1]) == "later"
        assert str(mails[1]["In-Reply-To"]) == str(mail["Message-ID"])
        await asyncio.sleep(3)
        assert len(mail_server.mails("alice")) == 2
        assert daemon.terminate() == 0, daemon.log()


@pytest.fixture
async def no_idle_server() -> AsyncIterator[MailServer]:
    server = MailServer(capabilities="IMAP4rev1 LITERAL+ UIDPLUS MOVE")
    await server.start()
    try:
        yield server
    finally:
        if server.tap is not None:
            await server.tap.stop()
        server.stop()


async def test_polls_where_the_server_has_no_idle(
    tmp_path: Path, no_idle_server: MailServer
) -> None:
    async with bridge(tmp_path, no_idle_server, poll_interval=0.3) as (daemon, _, stream):
        for i in range(2):
            await no_idle_server.send(new_mail(ALICE, f"polled {i}", "Alice"))
            await stream.wait_for(i + 1)
        assert "folder INBOX (polling)" in daemon.log()
        assert daemon.terminate() == 0, daemon.log()


async def test_idle_is_renewed_and_mail_still_arrives(
    tmp_path: Path, mail_server: MailServer
) -> None:
    assert mail_server.tap is not None
    async with bridge(tmp_path, mail_server, idle_renew=0.5) as (daemon, _, stream):
        await asyncio.sleep(2.0)  # several renewals
        await mail_server.send(new_mail(ALICE, "after renewals", "Alice"))
        [frame] = await stream.wait_for(1)
        assert frame["text"] == "after renewals"
        assert "folder INBOX (IDLE)" in daemon.log()
        assert mail_server.tap.sent("Idle completed")  # IDLE ended and began again
        assert daemon.terminate() == 0, daemon.log()


async def wait_until_delivered(config: Path, count: int, timeout: float = 20) -> None:
    """Until the mail connector's copies are marked delivered in its party's store."""
    db = config.parent / "acme.db"
    for _ in range(int(timeout / 0.1)):
        with sqlite3.connect(db) as conn:
            done = conn.execute("SELECT count(*) FROM outbox WHERE connector = 'mail' "
                                "AND state = 'delivered'").fetchone()[0]
        if done >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} deliveries to the mail room")


async def test_a_burst_of_mail_all_arrives_without_waiting_for_idle_renewal(
    tmp_path: Path, mail_server: MailServer
) -> None:
    # mail that arrives while the bridge handles earlier mail is announced in the answers
    # to its FETCH/STORE commands, and never again in IDLE: it must not wait for renewal
    async with bridge(tmp_path, mail_server) as (daemon, _, stream):
        for round_ in range(3):
            await asyncio.gather(*(mail_server.send(new_mail(ALICE, f"burst {round_}.{i}"))
                                   for i in range(6)))
            await asyncio.sleep(0.3)
        await stream.wait_for(18, timeout=30)  # idle_renew is 600 s
        assert sorted(f["text"] for f in stream.frames) == sorted(
            f"burst {r}.{i}" for r in range(3) for i in range(6))
        assert daemon.terminate() == 0, daemon.log()


@pytest.fixture
async def tls_server() -> AsyncIterator[MailServer]:
    server = MailServer(tls=True)
    await server.start()
    try:
        yield server
    finally:
        if server.tap is not None:
            await server.tap.stop()
        server.stop()


@pytest.mark.parametrize("imap_security", ["tls", "starttls"])
async def test_tls_and_starttls(tmp_path: Path, tls_server: MailServer,
                                imap_security: str) -> None:
    assert tls_server.tap is not None
    port = tls_server.imaps_port if imap_security == "tls" else tls_server.tap.port
    async with bridge(tmp_path, tls_server, tls_verify=False,
                      smtp={"host": "127.0.0.1", "port": tls_server.smtp_port,
                            "security": "starttls"},  # the server refuses mail without it
                      imap=tls_server.imap_options(port=port, security=imap_security)) as (
            daemon, api, stream):
        await tls_server.send(new_mail(ALICE, "over TLS", "Alice"))
        [frame] = await stream.wait_for(1)
        assert frame["text"] == "over TLS"
        await api.post("back over TLS", "bob")
        [mail] = await tls_server.wait_mails("alice", 1)
        assert plain(mail) == "back over TLS"
        if imap_security == "starttls":  # nothing readable went over the plain port
            assert not tls_server.tap.sent("over TLS")
        assert daemon.terminate() == 0, daemon.log()


async def test_a_reject_folder_the_server_refuses_holds_up_nothing(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server, reject_folder="bad..name") as (daemon, _, stream):
        await mail_server.send(new_mail("mallory@evil.example", "spam", "Mallory"))
        await mail_server.send(new_mail(ALICE, "still heard", "Alice"))
        [frame] = await stream.wait_for(1)
        assert frame["text"] == "still heard"
        log = daemon.log()
        assert "could not move mail UID 1 to 'bad..name'" in log
        assert "Invalid mailbox name" in log and "IMAP reconnecting" not in log
        assert daemon.terminate() == 0, daemon.log()
