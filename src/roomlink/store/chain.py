"""The per-pipe hash chain and its canonical encoding (version 1).

Every store, when it records a message, stores beside it::

    chain_n = (previous chain_n of that pipe in this store) + 1
    chain   = hex(SHA-256(bytes.fromhex(previous chain) || canonical_v1(message)))

starting from ``GENESIS`` (32 zero bytes) at position 0, or from the retention anchor.

``canonical_v1`` is what every party holds identically and nothing store-local (no seq,
recorded_at, outbox state, or the origin platform's own message id)::

    b"roomlink.record.v1\\n" + JSON object, keys sorted, separators "," and ":",
    ASCII only (every non-ASCII character as \\uXXXX), with exactly these keys:
      id, pipe, kind, origin_connector, origin_room,
      author: {id, name, party, platform}   (id may be null),
      text, attachments: [{mime, name, size, url}, ...] (absent values null), each with
        a "sha256" key too when its bytes are kept (issue 21; only then, so that every
        chain made before stays the same),
      reply_to, target (null when absent),
      ts: origin time in UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always 6 digits)

A new encoding gets a new prefix; this one never changes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _str
from typing import Any

from roomlink.message.model import Message
from roomlink.store.values import RecordRow

VERSION = 1
PREFIX = b"roomlink.record.v1\n"
GENESIS = "0" * 64


# one encoder: json.dumps() with options builds a new one per call (a third of the cost)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _null(value: str | None) -> str:
    return "null" if value is None else _str(value)


def utc_text(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (isoformat: a third of strftime's cost)."""
    if ts.tzinfo is not None:
        if ts.utcoffset():
            ts = ts.astimezone(UTC)
        ts = ts.replace(tzinfo=None)  # naive means UTC already: stores hand back naive UTC
    return ts.isoformat("T", "microseconds") + "Z"


def _attachment(a: dict[str, Any]) -> dict[str, Any]:
    doc = {"mime": a.get("mime"), "name": a.get("name"), "size": a.get("size"),
           "url": a.get("url")}
    if a.get("sha256") is not None:  # the kept bytes: every party holds the same digest
        doc["sha256"] = a["sha256"]
    return doc


def canonical_fields(
    *,
    id: str,
    pipe: str,
    kind: str,
    origin_connector: str,
    origin_room: str,
    author_name: str,
    author_id: str | None,
    author_party: str,
    author_platform: str,
    text: str,
    attachments: list[dict[str, Any]],
    reply_to: str | None,
    target: str | None,
    ts: datetime,
) -> bytes:
    # exactly what _ENCODER.encode() of reference_document() gives (tests check it), built
    # by hand: about 3 times faster, and this runs for every message in every store
    atts = _ENCODER.encode([_attachment(a) for a in attachments]) if attachments else "[]"
    body = (
        '{"attachments":' + atts + ',"author":{"id":' + _null(author_id) + ',"name":'
        + _str(author_name) + ',"party":' + _str(author_party) + ',"platform":'
        + _str(author_platform) + '},"id":' + _str(id) + ',"kind":' + _str(kind)
        + ',"origin_connector":' + _str(origin_connector) + ',"origin_room":'
        + _str(origin_room) + ',"pipe":' + _str(pipe) + ',"reply_to":' + _null(reply_to)
        + ',"target":' + _null(target) + ',"text":' + _str(text) + ',"ts":"' + utc_text(ts)
        + '"}'
    )
    return PREFIX + body.encode("ascii")


def reference_document(
    *, id: str, pipe: str, kind: str, origin_connector: str, origin_room: str,
    author_name: str, author_id: str | None, author_party: str, author_platform: str,
    text: str, attachments: list[dict[str, Any]], reply_to: str | None, target: str | None,
    ts: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The canonical document as a JSON value: the specification canonical_fields follows."""
    return {
        "id": id, "pipe": pipe, "kind": kind, "origin_connector": origin_connector,
        "origin_room": origin_room,
        "author": {"id": author_id, "name": author_name, "party": author_party,
                   "platform": author_platform},
        "text": text, "attachments": [_attachment(a) for a in attachments],
        "reply_to": reply_to, "target": target, "ts": utc_text(ts),
    }  # fmt: skip


def reference_bytes(**fields: Any) -> bytes:
    return PREFIX + _ENCODER.encode(reference_document(**fields)).encode("ascii")


def canonical(m: Message) -> bytes:
    a = m.author
    return canonical_fields(
        id=m.id,
        pipe=m.pipe,
        kind=m.kind.value,
        origin_connector=m.origin_connector,
        origin_room=m.origin_room,
        author_name=a.name,
        author_id=a.id,
        author_party=a.party,
        author_platform=a.platform,
        text=m.text,
        attachments=[x.model_dump() for x in m.attachments],
        reply_to=m.reply_to,
        target=m.target,
        ts=m.ts,
    )


def canonical_stored(r: RecordRow) -> bytes:
    """The canonical bytes of a stored row, as stored: a tampered row is hashed as it
    is, never refused."""
    raw = r.attachments
    return canonical_fields(
        id=r.id,
        pipe=r.pipe,
        kind=r.kind,
        origin_connector=r.origin_connector,
        origin_room=r.origin_room,
        author_name=r.author_name,
        author_id=r.author_id,
        author_party=r.author_party,
        author_platform=r.author_platform,
        text=r.text,
        attachments=json.loads(raw) if raw and raw != "[]" else [],
        reply_to=r.reply_to,
        target=r.target,
        ts=r.ts,
    )


def canonical_row(r: Any) -> bytes:
    """The canonical bytes of a ``messages`` row as a mapping of its columns (``ts`` a
    datetime, ``attachments`` the stored JSON text): what migration 0002 chains."""
    raw = r["attachments"]
    return canonical_fields(
        id=r["id"], pipe=r["pipe"], kind=r["kind"], origin_connector=r["origin_connector"],
        origin_room=r["origin_room"], author_name=r["author_name"], author_id=r["author_id"],
        author_party=r["author_party"], author_platform=r["author_platform"], text=r["text"],
        attachments=json.loads(raw) if raw and raw != "[]" else [], reply_to=r["reply_to"],
        target=r["target"], ts=r["ts"],
    )  # fmt: skip


def link(previous: str, data: bytes) -> str:
    """The chain value after ``data``, given the previous one (hex)."""
    try:
        prev = bytes.fromhex(previous)
    except ValueError:  # a tampered head: chain on from something that cannot match
        prev = previous.encode("utf-8", "replace")
    return hashlib.sha256(prev + data).hexdigest()
