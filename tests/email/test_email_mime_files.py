"""The files of a mail as pure functions: which parts are files, their names, types and
bytes, and how a file is attached on the way out."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from roomlink_connectors.email.files import attach, mail_files


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def test_body_and_its_html_are_text_everything_else_a_file() -> None:
    msg = EmailMessage()
    msg["From"] = "a@test.local"
    msg.set_content("the text")
    msg.add_alternative("<p>the text</p>", subtype="html")
    msg.add_attachment("a note as a file\n", filename="note.txt")
    forwarded = EmailMessage()
    forwarded["Subject"] = "old"
    forwarded.set_content("forwarded text")
    msg.add_attachment(forwarded)
    files = mail_files(parse(msg.as_bytes()))
    assert [(f.name, f.mime) for f in files] == [("note.txt", "text/plain"),
                                                 ("message-2.eml", "message/rfc822")]
    assert files[0].data == b"a note as a file\n"
    assert files[1].data is not None and b"forwarded text" in files[1].data


def test_declared_size_is_read_and_a_garbled_type_is_not_passed_on() -> None:
    raw = (b"From: a@test.local\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
           b'Content-Disposition: attachment; filename="x.pdf"; size=3\r\n\r\nYWJj\r\n'
           b"--b--\r\n")
    [f] = mail_files(parse(raw))
    assert (f.name, f.data, f.declared_size, f.problem) == ("x.pdf", b"abc", 3, None)
    out = EmailMessage()
    out.set_content("text")
    attach(out, "x.pdf", 'text/html"; charset=evil', b"abc")
    [part] = list(out.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"


def test_a_name_beyond_ascii_with_quotes_stays_one_parameter() -> None:
    out = EmailMessage(policy=policy.SMTP)
    out.set_content("text")
    name = 'счёт"; filename="evil.exe'
    attach(out, name, "application/pdf", b"%PDF")
    raw = out.as_bytes()
    assert b"filename*=utf-8''" in raw and b'filename="evil.exe' not in raw
    [part] = list(parse(raw).iter_attachments())
    assert part.get_filename() == name
    assert part.get_content_type() == "application/pdf"
    assert part.get_payload(decode=True) == b"%PDF"
