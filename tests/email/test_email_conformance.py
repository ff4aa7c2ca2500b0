"""The connector conformance kit (tests/conformance.py) with a real mailbox as the room.

The room is Alice's address on a real Dovecot: she writes to the bridge through the
SMTP server and reads what the bridge sent her from her own Maildir.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from mailpeer import BRIDGE, MailServer, new_mail

import conformance
from conformance import Post
from filekit import PeerFile

ALICE = "alice@test.local"


class EmailPeer(conformance.PeerRoom):
    connector_type = "email"
    room = ALICE
    can_edit = can_delete = shows_edits = shows_deletes = False
    no_files = None  # attachments both ways

    def __init__(self, server: MailServer) -> None:
        self.server = server

    def connector_options(self) -> dict[str, Any]:
        return self.server.options()

    async def say(self, text: str, author: str) -> str:
        mail = new_mail(ALICE, text, author)
        await self.server.send(mail)
        return str(mail["Message-ID"])

    async def reply(self, to_native: str, text: str, author: str) -> str:
        mail = new_mail(ALICE, text, author, subject="Re: [p] conversation",
                        in_reply_to=to_native)
        await self.server.send(mail)
        return str(mail["Message-ID"])

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        mail = new_mail(ALICE, text, author)
        for f in files:
            maintype, _, subtype = f.type.partition("/")
            mail.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=f.name)
        await self.server.send(mail)
        return str(mail["Message-ID"])

    async def files_of(self, post: Post) -> list[PeerFile]:
        return attached(parse(post.raw))

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("mail cannot be edited")

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("the bridge never hears of a deleted mail")

    def posts(self) -> list[Post]:
        posts = []
        for raw in self.server.raw_mails("alice"):
            msg = parse(raw)
            plain = msg.get_body(("plain",))
            assert plain is not None
            posts.append(Post(
                native_id=str(msg["Message-ID"]),
                text=plain.get_content().strip(),
                author=msg["From"].addresses[0].display_name,
                reply_to=str(msg["In-Reply-To"]) if msg["In-Reply-To"] else None,
                raw=raw,
            ))
        return posts

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        # Dovecot sends a body with its Message-ID only in answer to the bridge's FETCH
        assert self.server.tap is not None
        await self.server.tap.wait_sent(native_id, timeout)

    def assert_inert(self, post: Post, hostile: str) -> None:
        msg = parse(post.raw)
        assert_headers_intact(msg)
        html_part = msg.get_body(("html",))
        assert html_part is not None
        html = html_part.get_content()
        for tag in ("<b>", "<script", "<a href='x'", "<!channel>", "&amp;amp;amp;"):
            assert tag not in html, (tag, html)


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def attached(msg: EmailMessage) -> list[PeerFile]:
    """The attachments of a mail as a mail program saves them: name, type, bytes."""
    files = []
    for part in msg.iter_attachments():
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        files.append(PeerFile(str(part.get_filename()), part.get_content_type(), data))
    return files


def assert_headers_intact(msg: EmailMessage, to: tuple[str, ...] = (ALICE,)) -> None:
    """Exactly the headers the bridge writes: nothing a relayed text could have added."""
    assert msg.get_all("Bcc") is None and msg.get_all("Cc") is None
    assert len(msg.get_all("Subject") or []) == 1
    assert len(msg.get_all("From") or []) == 1
    assert [a.addr_spec for a in msg["From"].addresses] == [BRIDGE]
    assert tuple(a.addr_spec for a in msg["To"].addresses) == to
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == [BRIDGE]


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path,
                           mail_server: MailServer) -> None:
    async with conformance.harness(tmp_path, EmailPeer(mail_server)) as h:
        await scenario(h)
