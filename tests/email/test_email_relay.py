"""Email <-> API through the real roomlink process, a real Dovecot and a real SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiohttp
from mailpeer import BRIDGE, MailServer, new_mail
from test_email_conformance import assert_headers_intact

from rlkit import Daemon, Room, Stream, export, free_port, write_config

ALICE, CAROL = "alice@test.local", "carol@test.local"
ROOM = f"{CAROL}, {ALICE}"  # normalised to "alice@test.local, carol@test.local"


def bridge_config(tmp_path: Path, server: MailServer, room: str = ROOM,
                  delivery: dict[str, Any] | None = None, **options: Any) -> tuple[Path, int]:
    port = free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {p: {"store": f"sqlite:///{tmp_path}/{p}.db"} for p in ("agency", "acme")},
        "connectors": {
            "mail": {"party": "acme", "type": "email", **server.options(**options)},
            "web": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {"deal": {"rooms": [{"connector": "mail", "room": room},
                                     {"connector": "web", "room": "lobby"}]}},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0, **(delivery or {})},
    })
    return path, port


@contextlib.asynccontextmanager
async def bridge(tmp_path: Path, server: MailServer, room: str = ROOM,
                 delivery: dict[str, Any] | None = None, **options: Any
                 ) -> AsyncIterator[tuple[Daemon, Room, Stream]]:
    path, port = bridge_config(tmp_path, server, room, delivery, **options)
    daemon = Daemon(path, [port])
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Room(http, port, "lobby")
            async with api.stream() as stream:
                yield daemon, api, stream
    finally:
        daemon.cleanup()


def plain(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).strip()


def html(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def test_chat_reaches_every_recipient_as_one_thread(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server) as (daemon, api, _):
        first = await api.post("hello **team**, see [the plan](https://example.org/p)", "bob")
        await api.post("second", "bob")
        await api.post("third from me", "Zoë")
        mails = await mail_server.wait_mails("alice", 3)
        assert len(await mail_server.wait_mails("carol", 3)) == 3
        one, two, three = mails
        for m in mails:
            assert_headers_intact(m, (ALICE, CAROL))
            assert m["Subject"] == "[deal] conversation"
        assert one["From"].addresses[0].display_name == "bob via agency"
        assert three["From"].addresses[0].display_name == "Zoë via agency"
        assert "=?utf-8?" in mail_server.raw_mails("alice")[2].decode().split("\n\n")[0]
        assert plain(one) == "hello *team*, see the plan (https://example.org/p)"
        assert "<strong>team</strong>" in html(one)
        assert '<a href="https://example.org/p">the plan</a>' in html(one)
        # one thread: each mail names the earlier ones
        ids = [str(m["Message-ID"]) for m in mails]
        assert len(set(ids)) == 3 and all(i.endswith("@test.local>") for i in ids)
        assert one["In-Reply-To"] is None and one["References"] is None
        assert (str(two["In-Reply-To"]), str(two["References"])) == (ids[0], ids[0])
        assert str(three["In-Reply-To"]) == ids[1]
        assert str(three["References"]).split() == ids[:2]
        # and it survives a restart: the next mail still continues the thread
        assert daemon.terminate() == 0, daemon.log()
        await daemon.start()
        await api.post("after a restart", "bob")
        four = (await mail_server.wait_mails("alice", 4))[3]
        assert str(four["In-Reply-To"]) == ids[2]
        assert str(four["References"]).split() == ids
        # a chat reply to the first message answers the first mail
        await api.post("about the plan", "carl", reply_to=first["id"])
        five = (await mail_server.wait_mails("alice", 5))[4]
        assert str(five["In-Reply-To"]) == ids[0]
        assert daemon.terminate() == 0, daemon.log()


async def test_reply_comes_back_as_just_the_new_text(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server) as (daemon, api, stream):
        said = await api.post("Can we ship on *Friday*?", "bob")
        await api.post("unrelated", "bob")
        asked = (await mail_server.wait_mails("carol", 2))[0]
        reply = EmailMessage()
        reply["From"] = "Carol Exec <Carol@Test.Local>"
        reply["To"] = BRIDGE
        reply["Subject"] = "Re: " + str(asked["Subject"])
        reply["Message-ID"] = make_msgid(domain="test.local")
        reply["In-Reply-To"] = asked["Message-ID"]
        reply["References"] = asked["Message-ID"]
        reply.set_content(
            "Yes, Friday works.\nLet's do 10:00 *sharp*.\n\n-- \nCarol Exec\nCTO, Acme\n\n"
            f"On Mon, 30 Nov 2026 at 10:00, bob via agency <{BRIDGE}> wrote:\n"
            "> Can we ship on *Friday*?\n")
        reply.add_alternative(
            "<p>Yes, Friday works.<br>Let's do 10:00 <b>sharp</b>.</p>"
            "<div class=\"gmail_signature\">-- <br>Carol Exec</div>"
            "<div class=\"gmail_quote\">On Mon ... wrote:<blockquote>Can we ship?</blockquote>"
            "</div>", subtype="html")
        await mail_server.send(reply)
        [frame] = await stream.wait_for(1)
        assert frame["text"] == "Yes, Friday works.\nLet's do 10:00 \\*sharp\\*."
        assert frame["author"] == {"name": "Carol Exec", "party": "acme", "platform": "email"}
        assert frame["reply_to"] == said["id"]
        # relayed mail is marked read; nothing goes back to the mail room as an echo
        await asyncio.sleep(1.0)
        assert mail_server.flags("bridge") == ["S"]
        assert len(mail_server.mails("alice")) == 2
        assert daemon.terminate() == 0, daemon.log()


async def test_html_only_mail_and_attachments(tmp_path: Path, mail_server: MailServer) -> None:
    async with bridge(tmp_path, mail_server) as (daemon, _, stream):
        msg = EmailMessage()
        msg["From"] = ALICE
        msg["To"] = BRIDGE
        msg["Subject"] = "fresh"
        msg["Message-ID"] = make_msgid(domain="test.local")
        msg.set_content("<p>See <b>the</b> <a href=\"https://example.org/x\">file</a></p>"
                        "<script>alert(1)</script>", subtype="html")
        msg.add_attachment(b"%PDF-1.4 " + b"x" * 1000, maintype="application",
                           subtype="pdf", filename="offer.pdf")
        await mail_server.send(msg)
        [frame] = await stream.wait_for(1)
        assert frame["text"] == "See **the** [file](https://example.org/x)"
        assert frame["author"]["name"] == ALICE  # no display name: the address
        records = export(daemon.config, "agency", "deal")
        pdf = b"%PDF-1.4 " + b"x" * 1000
        assert [{k: v for k, v in a.items() if v is not None}
                for a in records[0]["attachments"]] == [{
            "name": "offer.pdf", "mime": "application/pdf", "size": 1009,
            "sha256": hashlib.sha256(pdf).hexdigest()}]
        assert daemon.terminate() == 0, daemon.log()


async def test_senders_machines_and_broken_mail_are_dropped(
    tmp_path: Path, mail_server: MailServer
) -> None:
    async with bridge(tmp_path, mail_server, allowed_senders=["@partner.example"],
                      reject_folder="Dropped 台北", max_message_bytes=200_000) as (
            daemon, _, stream):
        stranger = new_mail("mallory@evil.example", "buy now", "Mallory")
        vacation = new_mail(ALICE, "I am out of office until Monday.", "Alice")
        vacation["Auto-Submitted"] = "auto-replied"
        bulk = new_mail(ALICE, "newsletter", "Alice")
        bulk["Precedence"] = "bulk"
        xauto = new_mail(ALICE, "autoresponder", "Alice")
        xauto["X-Autorespond"] = "yes"
        bounce = new_mail("mailer-daemon@partner.example", "Delivery failed", "Mail Delivery")
        dsn = EmailMessage()
        dsn["From"] = "postmaster@test.local"
        dsn["To"] = BRIDGE
        dsn["Subject"] = "Undelivered Mail"
        dsn.set_content("report")
        dsn.make_mixed()
        dsn.replace_header("Content-Type", 'multipart/report; report-type=delivery-status')
        own = new_mail(BRIDGE, "the bridge's own", "bob via agency", to=ALICE)
        huge = new_mail(ALICE, "x" * 300_000, "Alice")
        for m in (stranger, vacation, bulk, xauto):
            await mail_server.send(m)
        await mail_server.send(bounce, sender="", recipients=[BRIDGE])  # empty Return-Path
        await mail_server.send(dsn, sender="", recipients=[BRIDGE])
        await mail_server.send(own, sender=BRIDGE, recipients=[BRIDGE])
        await mail_server.send(huge)
        broken = (b"From: Alice <alice@test.local>\r\nTo: bridge@test.local\r\n"
                  b"Subject: =?utf-8?q?broken?=\r\nMessage-ID: <broken@test.local>\r\n"
                  b"Content-Type: multipart/mixed; boundary=\"nope\r\n\r\n"
                  b"--nope\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\n!!!\xff\xfe not base64\r\n")
        await mail_server.send(broken, sender=ALICE, recipients=[BRIDGE])
        partner = new_mail("pat@partner.example", "a partner may write", "Pat")
        await mail_server.send(partner)
        await mail_server.send(new_mail(ALICE, "and the room still works", "Alice"))
        frames = await stream.wait_for(2)
        await asyncio.sleep(1.5)  # anything dropped wrongly would have come by now
        texts = [f["text"] for f in stream.frames]
        assert texts == ["a partner may write", "and the room still works"], texts
        log = daemon.log()
        assert "cannot be read (LookupError: unknown encoding: x-no-such-charset)" in log
        assert "mallory@evil.example not relayed: sender not allowed" in log
        assert "Auto-Submitted: auto-replied" in log and "Precedence: bulk" in log
        assert "a bounce" in log and "delivery status report" in log
        assert "(max_message_bytes 200000): skipped" in log
        # dropped mail was moved, unread, to the reject folder; the rest is read or left
        # (Dovecot keeps the folder's name as IMAP sent it: modified UTF-7, RFC 3501's
        # own example for these two characters)
        dropped = mail_server.flags("bridge", "Dropped &U,BTFw-")
        assert len(dropped) == 6 and all("S" not in f for f in dropped)
        assert frames[-1]["author"]["name"] == "Alice"
        assert daemon.terminate() == 0, daemon.log()


async def test_hostile_author_adds_no_header(tmp_path: Path, mail_server: MailServer) -> None:
    async with bridge(tmp_path, mail_server, room=ALICE) as (daemon, api, _):
        await api.post("hi\r\nBcc: victim@example.com", "eve\r\nBcc: victim@example.com")
        [mail] = await mail_server.wait_mails("alice", 1)
        assert_headers_intact(mail)
        assert mail["From"].addresses[0].display_name == (
            "eve Bcc: victim@example.com via agency")
        raw = mail_server.raw_mails("alice")[0]
        head = raw.split(b"\n\n")[0]
        assert b"\nBcc:" not in head and b"\r\n" not in head.replace(b"\r\n", b"\n")
        await asyncio.sleep(0.5)
        assert mail_server.mails("victim") == []
        assert daemon.terminate() == 0, daemon.log()


async def test_mail_finds_its_room_among_several(tmp_path: Path, mail_server: MailServer) -> None:
    port = free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {p: {"store": f"sqlite:///{tmp_path}/{p}.db"} for p in ("agency", "acme")},
        "connectors": {
            "mail": {"party": "acme", "type": "email",
                     **mail_server.options(allowed_senders=["@partner.example"])},
            "web": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": {
            "deal": {"rooms": [{"connector": "mail", "room": ALICE},
                               {"connector": "web", "room": "lobby"}]},
            "ops": {"rooms": [{"connector": "mail", "room": "Dave@test.local, carol@test.local"},
                              {"connector": "web", "room": "ops"}]},
        },
    })
    daemon = Daemon(path, [port])
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            lobby, ops = Room(http, port, "lobby"), Room(http, port, "ops")
            async with lobby.stream() as deal_stream, ops.stream() as ops_stream:
                await lobby.post("to alice", "bob")
                said = await ops.post("to ops", "bob")
                [to_alice] = await mail_server.wait_mails("alice", 1)
                [to_ops] = await mail_server.wait_mails("carol", 1)
                assert to_ops["Subject"] == "[ops] conversation"
                assert sorted(a.addr_spec for a in to_ops["To"].addresses) == [
                    CAROL, "dave@test.local"]
                # a reply goes to the room of the mail it answers
                await mail_server.send(new_mail(CAROL, "ops reply", "Carol",
                                                in_reply_to=str(to_ops["Message-ID"])))
                # alice is no recipient of the ops room: her reply to its mail is dropped
                await mail_server.send(new_mail(ALICE, "not mine to answer", "Alice",
                                                in_reply_to=str(to_ops["Message-ID"])))
                # a fresh mail goes to the room its sender is a recipient of
                await mail_server.send(new_mail(CAROL, "fresh from carol", "Carol"))
                # an allowed stranger lands where the mail's other recipients are
                await mail_server.send(new_mail("erin@partner.example", "erin here", "Erin",
                                                to=f"{BRIDGE}, {CAROL}"))
                await mail_server.send(new_mail(ALICE, "alice in her room", "Alice",
                                                in_reply_to=str(to_alice["Message-ID"])))
                frames = await ops_stream.wait_for(3)
                [deal] = await deal_stream.wait_for(1)
                await asyncio.sleep(1.0)
                assert [(f["author"]["name"], f["text"]) for f in ops_stream.frames] == [
                    ("Carol", "ops reply"), ("Carol", "fresh from carol"), ("Erin", "erin here")]
                assert frames[0]["reply_to"] == said["id"]
                assert frames[1].get("reply_to") is None
                assert deal["text"] == "alice in her room"
                assert len(deal_stream.frames) == 1
                assert "from alice@test.local not relayed: sender not allowed in room " \
                       "'carol@test.local, dave@test.local'" in daemon.log()
        assert daemon.terminate() == 0, daemon.log()
    finally:
        daemon.cleanup()
