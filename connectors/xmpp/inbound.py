"""What one groupchat message says, read from its stanza: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from slixmpp import Message

from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Kind

from .convert import ME, to_canonical
from .download import name_of

SID = "{urn:xmpp:sid:0}"
REPLY = "{urn:xmpp:reply:0}reply"
REPLACE = "{urn:xmpp:message-correct:0}replace"
RETRACT = "{urn:xmpp:message-retract:1}retract"
FALLBACK = "{urn:xmpp:fallback:0}fallback"
OCCUPANT = "{urn:xmpp:occupant-id:0}occupant-id"
UNSTYLED = "{urn:xmpp:styling:0}unstyled"
OOB = "{jabber:x:oob}x"
NS_REPLY = "urn:xmpp:reply:0"


@dataclass
class Said:
    """One message in a room, as the bridge understands it."""

    nick: str
    author: str  # who wrote it, for the author check: the occupant id, else the nick
    msg_id: str | None  # the sender's own id (origin-id, else the id attribute)
    stanza_id: str | None  # the room's id for it (XEP-0359), the archive's id
    kind: Kind = Kind.MESSAGE
    text: str = ""  # canonical
    reply_to: str | None = None  # the room's id of the message answered
    replaces: str | None = None  # a correction: the sender's id of the message corrected
    retracts: str | None = None  # a retraction: the room's id of the message retracted
    attachments: list[Attachment] = field(default_factory=list)
    ts: datetime | None = None


def author_key(msg: Message) -> str:
    """Who sent ``msg``: the room's stable occupant id (XEP-0421) where the room gives one,
    else the nick (which someone else can take once its holder left)."""
    occupant = msg.xml.find(OCCUPANT)
    if occupant is not None and occupant.get("id"):
        return f"occupant:{occupant.get('id')}"
    return f"nick:{msg['from'].resource}"


def room_stanza_id(msg: Message, room: str) -> str | None:
    for sid in msg.xml.findall(f"{SID}stanza-id"):
        if (sid.get("by") or "").lower() == room and sid.get("id"):
            return str(sid.get("id"))
    return None


def sender_id(msg: Message) -> str | None:
    origin = msg.xml.find(f"{SID}origin-id")
    if origin is not None and origin.get("id"):
        return str(origin.get("id"))
    return msg["id"] or None


def read(msg: Message, room: str, stanza_id: str | None, ts: datetime | None) -> Said:
    said = Said(nick=msg["from"].resource, author=author_key(msg), msg_id=sender_id(msg),
                stanza_id=stanza_id or room_stanza_id(msg, room), ts=ts)
    body = _without_fallbacks(msg)
    subject = msg.xml.find("{jabber:client}subject")
    if subject is not None and not body:  # a subject change (XEP-0045 §8.1)
        said.kind, said.text = Kind.TOPIC, escape(subject.text or "")
        return said
    retract = msg.xml.find(RETRACT)
    if retract is not None and retract.get("id"):
        said.kind, said.retracts = Kind.DELETE, str(retract.get("id"))
        return said
    replace = msg.xml.find(REPLACE)
    if replace is not None and replace.get("id"):
        said.kind, said.replaces = Kind.EDIT, str(replace.get("id"))
    reply = msg.xml.find(REPLY)
    if reply is not None and reply.get("id"):
        said.reply_to = str(reply.get("id"))
    links = []
    for oob in msg.xml.findall(OOB):  # a file shared by link (XEP-0066), one or more
        url = (oob.findtext("{jabber:x:oob}url") or "").strip()
        if url.startswith(("https://", "http://", "aesgcm://")) and url not in links:
            links.append(url)
            said.attachments.append(Attachment(url=url, name=name_of(url)))
    if links:  # the body repeats each link for clients without OOB: not text of its own
        body = "\n".join(line for line in body.split("\n") if line.strip() not in links)
    if said.kind is Kind.MESSAGE and body.startswith(ME):
        said.kind, body = Kind.ACTION, body[len(ME):]
    said.text = to_canonical(body, styled=msg.xml.find(UNSTYLED) is None)
    return said


def _without_fallbacks(msg: Message) -> str:
    """The body less the parts marked as fallback for what the bridge understands (the
    quote a reply carries, the note of a retraction); character offsets (XEP-0428)."""
    body: str = msg["body"]
    cuts: list[tuple[int, int]] = []
    for fallback in msg.xml.findall(FALLBACK):
        if fallback.get("for") != NS_REPLY:
            continue
        for part in fallback.findall("{urn:xmpp:fallback:0}body"):
            start, end = _offset(part.get("start"), 0), _offset(part.get("end"), len(body))
            if 0 <= start < end <= len(body):
                cuts.append((start, end))
    for start, end in sorted(cuts, reverse=True):
        body = body[:start] + body[end:]
    return body


def _offset(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return -1
