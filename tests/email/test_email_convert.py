"""Unit tests of connectors/email/convert.py: mail <-> canonical text, hostile input included."""
# ruff: noqa: RUF001  (Russian reply headers are Cyrillic on purpose)

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest
from roomlink_connectors.email.convert import (
    Outgoing,
    automatic_reason,
    build_mail,
    clean_header,
    html_to_markdown,
    make_message_id,
    parse_bytes,
    parse_room,
    read_mail,
    render_plain,
    room_tag,
    strip_reply,
    tag_of,
)
from roomlink_connectors.email.imap import mutf7
from roomlink_connectors.email.options import EmailOptions

LANGS = ["en", "de", "fr", "es", "it", "nl", "ru"]


def test_rooms_are_one_spelling_of_their_addresses() -> None:
    assert parse_room("PM@Acme.example,  cto@acme.example ") == (
        "cto@acme.example", "pm@acme.example")
    assert parse_room("Carol <cto@acme.example>, cto@acme.example") == ("cto@acme.example",)
    for bad in ("", "nobody", "a@b, c", "a@b\r\nBcc: x@y", "@acme.example"):
        with pytest.raises(ValueError):
            parse_room(bad)


def test_message_ids_carry_their_room_and_are_stable() -> None:
    tag = room_tag(parse_room("cto@acme.example"))
    one = make_message_id(tag, "msg1:mail:room:0", "acme.example")
    assert one == make_message_id(tag, "msg1:mail:room:0", "acme.example")  # a resend
    assert one != make_message_id(tag, "msg1:mail:room:1", "acme.example")
    assert tag_of(one, "ACME.example") == tag
    assert tag_of(one, "other.example") is None
    assert tag_of("<abc@acme.example>", "acme.example") is None


def mail_of(name: str, subject: str = "[p] conversation", text: str = "hi") -> EmailMessage:
    return build_mail(Outgoing(
        from_name=name, address="bridge@acme.example", to=("cto@acme.example",),
        subject=subject, message_id="<rl.x@acme.example>", in_reply_to=None, references=[],
        plain=render_plain(text), html="<p>x</p>", date=datetime(2026, 1, 1, tzinfo=UTC)))


@pytest.mark.parametrize("name", [
    "eve\r\nBcc: victim@example.com",
    "eve\nSubject: injected",
    "eve\rTo: victim@example.com",
    "eve\u2028Bcc: victim@example.com",
    "=?utf-8?q?Bcc=3A_x?= <victim@example.com>",
    'Mallory "the boss" <ceo@acme.example>, victim@example.com',
])
def test_no_name_adds_a_header_or_a_recipient(name: str) -> None:
    msg = mail_of(name, subject=name)
    raw = msg.as_bytes(policy=policy.SMTP)
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n")
             if line and not line[:1].isspace()]
    assert sorted(names) == sorted([b"From", b"Reply-To", b"To", b"Subject", b"Date",
                                    b"Message-ID", b"X-Auto-Response-Suppress",
                                    b"MIME-Version", b"Content-Type"])
    back = parse_bytes(raw)
    assert [a.addr_spec for a in back["From"].addresses] == ["bridge@acme.example"]
    assert [a.addr_spec for a in back["To"].addresses] == ["cto@acme.example"]
    if "=?" not in name:  # an encoded-word lookalike is decoded on reading: still one name
        assert back["From"].addresses[0].display_name == clean_header(name)


def test_non_ascii_names_are_rfc2047_encoded() -> None:
    raw = mail_of("Zoë Ünal 😀 via agency", subject="[Projekt Übersee] conversation"
                  ).as_bytes(policy=policy.SMTP)
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # every header is 7-bit
    assert b"=?utf-8?" in head
    back = parse_bytes(raw)
    assert back["From"].addresses[0].display_name == "Zoë Ünal 😀 via agency"
    assert back["Subject"] == "[Projekt Übersee] conversation"


def test_plain_part_renders_canonical_text() -> None:
    assert render_plain("**bold** *it* `code` [docs](https://e.org/d) \\*lit\\*") == (
        "*bold* _it_ `code` docs (https://e.org/d) *lit*")
    assert render_plain("<script>x</script> &amp;") == "<script>x</script> &amp;"


def test_reply_parser_keeps_only_the_new_text() -> None:
    english = ("Sounds good.\n\nSecond paragraph.\n\n-- \nCarol\nCTO\n\n"
               "On Mon, 30 Nov 2026 at 10:00, bob via agency <b@acme.example> wrote:\n> old\n")
    assert strip_reply(english, LANGS) == "Sounds good.\n\nSecond paragraph."
    german = ("Passt, danke!\n\nVon: bob via agency <b@acme.example>\nGesendet: Montag, 30. "
              "November 2026 10:00\nAn: Carol\nBetreff: [p] conversation\n\nalt\n")
    assert strip_reply(german, LANGS) == "Passt, danke!"
    russian = ("Договорились.\n\n30 нояб. 2026 г., в 10:00, bob <b@acme.example> написал:\n"
               "> старое\n")
    assert strip_reply(russian, LANGS) == "Договорились."
    outlook_ru = "Да.\n\nОт: bob <b@acme.example>\nОтправлено: 30 ноября 2026 г.\nold\n"
    assert strip_reply(outlook_ru, LANGS) == "Да."
    assert strip_reply("new\n\n> quoted\n> more\n", LANGS) == "new"
    assert strip_reply("Sent from my iPhone", LANGS) == ""
    assert strip_reply("- one\n- two\n", LANGS) == "- one\n- two"  # a list, not a signature


def test_html_becomes_markdown_without_quote_script_or_signature() -> None:
    html = ("<div>Hi <b>team</b> &amp; <i>all</i>, <a href='https://e.org'>see</a></div>"
            "<script>alert(1)</script><style>p{}</style>"
            "<div class='gmail_signature'>Carol, CTO</div>"
            "<div class='gmail_quote'>On Mon wrote:<blockquote>old</blockquote></div>")
    assert html_to_markdown(html) == "Hi **team** & *all*, [see](https://e.org)"
    outlook = "<p>Yes.</p><div id=\"divRplyFwdMsg\"><b>From:</b> bob</div><p>old text</p>"
    assert html_to_markdown(outlook) == "Yes."


def raw(headers: str, body: str = "hello\n") -> bytes:
    return (headers.strip() + "\n\n" + body).encode()


@pytest.mark.parametrize(("headers", "reason"), [
    ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
    ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
    ("Precedence: junk", "Precedence: junk"),
    ("Precedence: list", "Precedence: list"),
    ("Return-Path: <>", "empty Return-Path (a bounce)"),
    ("X-Autoreply: yes", "X-Autoreply header"),
    ("X-Autorespond: vacation", "X-Autorespond header"),
    ("Content-Type: multipart/report; report-type=delivery-status; boundary=b",
     "a delivery status report"),
])
def test_machine_mail_is_recognised(headers: str, reason: str) -> None:
    msg = parse_bytes(raw(f"From: a@b.example\n{headers}"))
    assert automatic_reason(msg) == reason


def test_people_mail_is_not_machine_mail() -> None:
    msg = parse_bytes(raw("From: a@b.example\nAuto-Submitted: no\nPrecedence: first-class\n"
                          "Return-Path: <a@b.example>"))
    assert automatic_reason(msg) is None


def test_read_mail_takes_author_references_and_flowed_text() -> None:
    mail = read_mail(raw(
        "From: =?utf-8?q?Zo=C3=AB?= <Zoe@B.example>\nTo: Bridge <bridge@acme.example>\n"
        "Cc: pm@acme.example\nMessage-ID: <m1@b.example>\n"
        "In-Reply-To: <rl.1@acme.example>\nReferences: <rl.0@acme.example> <rl.1@acme.example>\n"
        "Content-Type: text/plain; charset=utf-8; format=flowed\n"
        "Date: Mon, 30 Nov 2026 10:00:00 +0100",
        "This line was \nsoft-broken by the *client*.\n"), LANGS)
    assert (mail.sender, mail.sender_name) == ("zoe@b.example", "Zoë")
    assert mail.recipients == {"bridge@acme.example", "pm@acme.example"}
    assert mail.message_id == "<m1@b.example>"
    assert mail.in_reply_to == ["<rl.1@acme.example>", "<rl.0@acme.example>"]
    assert mail.text == "This line was soft-broken by the \\*client\\*."
    assert mail.date == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_dates_without_zone_or_in_the_future() -> None:
    naive = read_mail(raw("From: a@b.example\nDate: Mon, 30 Nov 2026 10:00:00 -0000"), LANGS)
    assert naive.date == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    future = read_mail(raw("From: a@b.example\nDate: Fri, 1 Jan 2100 10:00:00 +0000"), LANGS)
    assert future.date is not None and future.date <= datetime.now(UTC)
    garbage = read_mail(raw("From: a@b.example\nDate: yesterday-ish"), LANGS)
    assert garbage.date is None


def test_unreadable_mail_raises_for_the_caller_to_skip() -> None:
    with pytest.raises(ValueError):
        read_mail(raw("To: bridge@acme.example"), LANGS)  # no From
    with pytest.raises(LookupError):
        read_mail(raw("From: a@b.example\nContent-Type: text/plain; charset=no-such"), LANGS)
    mail = read_mail(b"From: a@b.example\n\n\xff\xfe invalid utf-8 \xc3", LANGS)
    assert "invalid utf-8" in mail.text  # replaced, never a crash


def test_options_check_addresses_and_formats() -> None:
    base = {"address": "Bridge@Acme.example", "smtp": {"host": "s"}, "imap": {"host": "i"}}
    opts = EmailOptions.model_validate(base)
    assert opts.address == "bridge@acme.example"
    assert (opts.smtp.effective_port, opts.imap.effective_port) == (465, 993)
    for bad in ({"address": "not an address"}, {"allowed_senders": ["@"]},
                {"display_name_format": "{nick} {oops}"}, {"subject_format": "{pipe"},
                {"address": "a@b.example\r\nBcc: x@y.example"}, {"reply_languages": ["xx"]},
                {"reject_folder": "Dropped\r\nA1 DELETE INBOX"},
                {"imap": {"host": "i", "folder": "INBOX\n"}}):
        with pytest.raises(ValueError):
            EmailOptions.model_validate({**base, **bad})
    assert EmailOptions.model_validate({**base, "reject_folder": "Отклонено"}).reject_folder


def test_mailbox_names_are_sent_in_modified_utf7() -> None:
    # RFC 3501 5.1.3's own example, and its "&" rule
    assert mutf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert mutf7("R&D") == "R&-D" and mutf7("INBOX") == "INBOX"
    assert mutf7("🙂") == "&2D3eQg-"  # beyond the BMP: a UTF-16 surrogate pair
