"""Mail <-> canonical text, both directions, as pure functions.

Outbound, a chat message becomes a mail with a plain-text and an HTML part rendered
from the canonical text, and headers that relayed text cannot break out of. Inbound, a
mail becomes just its new text: the plain part (or the HTML part turned into canonical
markdown), with the quoted history and the signature cut off by mail-parser-reply, and
its files (see :mod:`.files`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parsedate_to_datetime

from bs4 import BeautifulSoup
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage as ReplyParser
from markdownify import MarkdownConverter

from roomlink.message.markup import Style, escape, render, to_html

from .files import MailFile, attach, mail_files

# -- rooms and ids -------------------------------------------------------------------------

def parse_room(room: str) -> tuple[str, ...]:
    """The recipients of a room ("cto@acme.example, PM@acme.example"), normalised:
    lower-case, de-duplicated, sorted. ValueError when any entry is not an address."""
    if any(c in room for c in "\r\n\x00"):
        raise ValueError("a room must not contain CR, LF or NUL")
    found = set()
    for _name, addr in getaddresses([room]):
        addr = addr.strip().lower()
        if not addr or addr.count("@") != 1 or not all(addr.split("@")):
            raise ValueError(f"{room!r} is not a comma-separated list of email addresses")
        found.add(addr)
    if not found:
        raise ValueError(f"{room!r} names no email address")
    return tuple(sorted(found))


def room_tag(addresses: tuple[str, ...]) -> str:
    """A short stable tag of a room, carried in the Message-IDs sent to it."""
    return hashlib.sha256(",".join(addresses).encode()).hexdigest()[:12]


def make_message_id(tag: str, key: str, domain: str) -> str:
    """Deterministic per delivery: a resend after a crash has the same Message-ID, which
    mail clients show once."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<rl.{tag}.{digest}@{domain}>"


_OUR_ID = re.compile(r"^<rl\.([0-9a-f]{12})\.[0-9a-f]{32}@([^<>@\s]+)>$")


def tag_of(message_id: str, domain: str) -> str | None:
    """The room tag of a Message-ID this bridge made, else None."""
    m = _OUR_ID.match(message_id)
    return m.group(1) if m and m.group(2).lower() == domain.lower() else None


_MSG_ID = re.compile(r"<[^<>\s]+>")


def message_ids(value: str | None) -> list[str]:
    return _MSG_ID.findall(value or "")


# -- outbound ------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def clean_header(value: str, limit: int = 200) -> str:
    """A header value from relayed text: CR, LF and other controls become spaces (so no
    header can be injected), runs of spaces collapse, and it is cut to ``limit``."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


MAIL_PLAIN = Style(bold=("*", "*"), italic=("_", "_"), strike=("~", "~"), code=("`", "`"))


def render_plain(canonical: str) -> str:
    return render(canonical, MAIL_PLAIN)


def render_html(canonical: str) -> str:
    return to_html(canonical)


@dataclass
class Outgoing:
    from_name: str
    address: str
    to: tuple[str, ...]
    subject: str
    message_id: str
    in_reply_to: str | None
    references: list[str]
    plain: str
    html: str
    date: datetime
    files: list[tuple[str | None, str | None, bytes]] = field(default_factory=list)
    # (name, type, bytes) of each file to attach


def build_mail(o: Outgoing) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    # the policy encodes non-ASCII per RFC 2047 and quotes specials; cleaning first
    # removes the CR/LF it would otherwise refuse (or a header could be injected with)
    msg["From"] = Address(display_name=clean_header(o.from_name), addr_spec=o.address)
    msg["Reply-To"] = Address(addr_spec=o.address)
    msg["To"] = [Address(addr_spec=a) for a in o.to]
    msg["Subject"] = clean_header(o.subject, 250)
    msg["Date"] = format_datetime(o.date)
    msg["Message-ID"] = o.message_id
    if o.in_reply_to:
        msg["In-Reply-To"] = o.in_reply_to
    if o.references:
        msg["References"] = " ".join(o.references)
    # Exchange/Outlook: no out-of-office answers to the bridge
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(o.plain + "\n")
    msg.add_alternative(
        "<!DOCTYPE html>\n<html><body>\n" + o.html + "</body></html>\n", subtype="html")
    for name, mime, data in o.files:
        attach(msg, name, mime, data)
    return msg


# -- inbound -------------------------------------------------------------------------------

def parse_bytes(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def automatic_reason(msg: Message) -> str | None:
    """Why this mail was written by a machine (auto-reply, bounce, report), else None."""
    auto = str(msg.get("Auto-Submitted", "") or "").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = str(msg.get("Precedence", "") or "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if msg.get(name) is not None:
            return f"{name} header"
    if msg.get_content_type() == "multipart/report":
        return "a delivery status report"
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status",
                                       "message/disposition-notification"):
            return "a delivery status report"
    for path in msg.get_all("Return-Path") or []:
        if str(path).strip() in ("<>", ""):
            return "empty Return-Path (a bounce)"
    return None


@dataclass
class Incoming:
    message_id: str | None
    sender: str  # the address, lower-case
    sender_name: str  # display name, else the address
    recipients: set[str]  # To and Cc, lower-case
    in_reply_to: list[str]  # In-Reply-To first, then References newest first
    text: str  # canonical: only the new text
    files: list[MailFile] = field(default_factory=list)
    date: datetime | None = None
    automatic: str | None = None


def read_mail(raw: bytes, languages: list[str]) -> Incoming:
    """Parse one mail. Raises ValueError (or anything the parser raises) for a mail that
    cannot be read: the caller logs and skips it."""
    msg = parse_bytes(raw)
    senders = getaddresses([str(v) for v in msg.get_all("From") or []])
    if not senders or "@" not in senders[0][1]:
        raise ValueError("no usable From address")
    name, sender = senders[0]
    sender = sender.strip().lower()
    recipients = {a.strip().lower() for _, a in getaddresses(
        [str(v) for h in ("To", "Cc") for v in msg.get_all(h) or []]) if "@" in a}
    mid = message_ids(str(msg.get("Message-ID", "") or ""))
    refs = message_ids(str(msg.get("In-Reply-To", "") or ""))
    refs += [r for r in reversed(message_ids(str(msg.get("References", "") or "")))
             if r not in refs]
    mid_value = mid[0] if mid else None
    date = None
    with contextlib.suppress(TypeError, ValueError, IndexError):
        date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    if date is not None:
        # "-0000" parses without a zone; a sender's clock (or a forger) ahead of ours
        # must not date a message in the future
        date = min(date if date.tzinfo else date.replace(tzinfo=UTC), datetime.now(UTC))
    return Incoming(
        message_id=mid_value,
        sender=sender,
        sender_name=clean_header(name) or sender,
        recipients=recipients,
        in_reply_to=refs,
        text=new_text(msg, languages),
        files=mail_files(msg),
        date=date,
        automatic=automatic_reason(msg),
    )


def new_text(msg: EmailMessage, languages: list[str]) -> str:
    """The canonical text the sender wrote in this mail, without quote and signature."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return strip_reply(html_to_markdown(content), languages)
    if str(part.get_param("format", "") or "").lower() == "flowed":
        content = unflow(content, str(part.get_param("delsp", "") or "").lower() == "yes")
    return escape(strip_reply(content, languages))


_QUOTE_BLOCKS = re.compile(
    r"<(div|blockquote)[^>]*(gmail_quote|divRplyFwdMsg|moz-cite-prefix|type=\"?cite)[^>]*>.*",
    re.IGNORECASE | re.DOTALL)


def html_to_markdown(html: str) -> str:
    # Gmail, Outlook and Thunderbird mark where the quoted history starts: cut there
    html = _QUOTE_BLOCKS.sub("", html)
    soup = BeautifulSoup(html, "html.parser")
    for el in soup(["script", "style", "head", "title", "img"]):
        el.decompose()  # their content is no text anyone wrote
    for el in soup.select(".gmail_signature, .moz-signature"):
        el.decompose()
    md = MarkdownConverter(heading_style="ATX", bullets="-").convert_soup(soup)
    return re.sub(r"\n{3,}", "\n\n", str(md)).strip()


# mail-parser-reply has no Russian yet: its attribution lines ("..., Иван написал:") and
# Outlook's header block ("От: ... Отправлено: ...") end the new text too
_EXTRA_HEADERS = {
    "ru": re.compile(r"^(?:>\s*)*(?:.{0,200}(?:написал|написала|пишет)(?:\(а\))?\s*:"  # noqa: RUF001
                     r"|-{3,}\s*Исходное сообщение\s*-{3,}|От:\s.*\n(?:.*\n)?Отправлено:)",
                     re.MULTILINE),
}


def strip_reply(text: str, languages: list[str]) -> str:
    """Only the newest reply: no "On ... wrote:" history, no signature, no quote below."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for lang in languages:
        extra = _EXTRA_HEADERS.get(lang)
        m = extra.search(text) if extra else None
        if m and m.start() > 0:
            text = text[:m.start()]
    known = [lang for lang in languages if lang in MAIL_LANGUAGES] or ["en"]
    parsed = ReplyParser(text, languages=known, keep_hyphen_lists=True).read()
    body = parsed.replies[0].body if parsed.replies else text
    lines = body.split("\n")
    # a bottom quote without an attribution line: drop the trailing quoted block
    end = len(lines)
    while end > 0 and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end > 0:
        lines = lines[:end]
    return "\n".join(lines).strip()


def unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft-broken lines (a trailing space) into one."""
    out: list[str] = []
    carry = ""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.endswith(" ") and line != "-- ":
            carry += line[:-1] if delsp else line
            continue
        out.append(carry + line)
        carry = ""
    if carry:
        out.append(carry)
    return "\n".join(out)
