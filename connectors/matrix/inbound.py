"""One Matrix room event -> the events roomlink relays (pure: the connector picks the room).

Events come as their JSON (``event.source``; for an encrypted one, what matrix-nio
decrypted). Native ids are event ids, so a sync re-read after a crash yields the same
records, edits and deletes included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Inbound, InboundAuthor, Kind

from .convert import to_canonical
from .media import remote_file

_FILES = {"m.image", "m.file", "m.video", "m.audio"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ts(source: dict[str, Any]) -> datetime | None:
    stamp = source.get("origin_server_ts")
    return datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int) else None


def events(room: str, source: dict[str, Any], me: str, name_of: Callable[[str], str]
           ) -> list[Inbound]:
    """The inbound events one room event stands for ([] when it is nothing to relay)."""
    sender = source.get("sender")
    event_id = source.get("event_id")
    if not isinstance(sender, str) or not isinstance(event_id, str) or sender == me:
        return []  # our own posts are never relayed back
    kind = source.get("type")
    content = _dict(source.get("content"))
    ts = _ts(source)
    if kind == "m.room.message":
        if not content or "redacted_because" in _dict(source.get("unsigned")):
            return []  # redacted before we saw it
        return _message(room, event_id, content, InboundAuthor(name_of(sender), sender), ts)
    if kind == "m.room.redaction":
        target = source.get("redacts") or content.get("redacts")  # room v11 moved it
        if not isinstance(target, str):
            return []
        return [Inbound(room=room, author=InboundAuthor(name_of(sender), sender),
                        kind=Kind.DELETE, native_id=event_id, target_native=target, ts=ts)]
    if kind == "m.room.member":
        return _membership(room, event_id, source, content, me, ts)
    if kind == "m.room.topic" and isinstance(content.get("topic"), str):
        return [Inbound(room=room, author=InboundAuthor(name_of(sender), sender),
                        text=escape(content["topic"]), kind=Kind.TOPIC, native_id=event_id,
                        ts=ts)]
    return []


def _message(room: str, event_id: str, content: dict[str, Any], author: InboundAuthor,
             ts: datetime | None) -> list[Inbound]:
    relates = _dict(content.get("m.relates_to"))
    if relates.get("rel_type") == "m.replace" and isinstance(relates.get("event_id"), str):
        new = _dict(content.get("m.new_content"))  # the new text, not the "* ..." fallback
        text = to_canonical(new)
        if not text.strip():
            return []
        return [Inbound(room=room, author=author, text=text, kind=Kind.EDIT,
                        native_id=event_id, target_native=relates["event_id"], ts=ts)]
    msgtype = content.get("msgtype")
    files: list[Attachment] = []
    remote = remote_file(content) if msgtype in _FILES else None
    if remote is not None:
        # a placeholder: the connector fetches the file and puts what it kept instead
        files.append(Attachment(url=remote.url, name=remote.name, mime=remote.mime,
                                size=remote.size))
        text = caption(content)
    else:
        text = to_canonical(content)
    if not text.strip() and not files:
        return []
    reply = _dict(relates.get("m.in_reply_to")).get("event_id")
    return [Inbound(room=room, author=author, text=text,
                    kind=Kind.ACTION if msgtype == "m.emote" else Kind.MESSAGE,
                    native_id=event_id, reply_to_native=reply if isinstance(reply, str) else None,
                    attachments=files, ts=ts)]


def caption(content: dict[str, Any]) -> str:
    """A file event's caption: its ``body`` when ``filename`` is set and differs from
    it (the spec's rule since v1.10), else nothing (the body is the file's name)."""
    filename, body = content.get("filename"), content.get("body")
    if isinstance(filename, str) and filename and isinstance(body, str) and body != filename:
        return to_canonical(content)
    return ""


def _membership(room: str, event_id: str, source: dict[str, Any], content: dict[str, Any],
                me: str, ts: datetime | None) -> list[Inbound]:
    user = source.get("state_key")
    if not isinstance(user, str) or user == me:
        return []
    before = _dict(_dict(source.get("unsigned")).get("prev_content"))
    now, was = content.get("membership"), before.get("membership")
    if now == "join" and was != "join":
        kind, shown = Kind.JOIN, content
    elif now in ("leave", "ban") and was == "join":
        kind, shown = Kind.PART, before
    else:
        return []  # a name change, an invite, a knock: not relayed
    name = shown.get("displayname")
    author = InboundAuthor(name if isinstance(name, str) and name else user, user)
    return [Inbound(room=room, author=author, text=escape("joined" if kind is Kind.JOIN
                                                          else "left"),
                    kind=kind, native_id=event_id, ts=ts)]
