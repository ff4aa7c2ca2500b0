"""Slack ``message`` events as roomlink :class:`Inbound` events.

Which events are relayed: plain messages, ``me_message`` (an action), ``file_share``
(with the files, which the connector then downloads and keeps), thread replies, edits
(``message_changed``) and deletes (``message_deleted``); joins, leaves and topic changes
go as such and the pipe decides whether they travel. The bridge's own posts never come
back: they are recognised by its bot id and bot user id from ``auth.test`` (their echo
can arrive before ``chat.postMessage`` has answered) and, second, by the timestamps it
posted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from roomlink.message.filenames import clean_filename
from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Inbound, InboundAuthor, Kind

from .convert import avatar, display_name, mentioned_users, to_canonical

USER_CACHE = 10_000
PLAIN_SUBTYPES = {None, "me_message", "file_share", "thread_broadcast", "bot_message"}
MEMBERSHIP = {"channel_join": Kind.JOIN, "group_join": Kind.JOIN,
              "channel_leave": Kind.PART, "group_leave": Kind.PART}
TOPIC = {"channel_topic", "group_topic"}


@dataclass(frozen=True, slots=True)
class Me:
    """Who the bridge is on this workspace (from ``auth.test``)."""

    user_id: str
    bot_id: str | None


class Directory:
    """Display names and avatars of users (``users.info``, cached; ``user_change`` refreshes)."""

    def __init__(self, web: AsyncWebClient, log: logging.Logger) -> None:
        self.web = web
        self.log = log
        self._users: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self.channel_names: dict[str, str] = {}  # channel id -> name, from conversations.list

    def update(self, user: Mapping[str, Any]) -> None:
        uid = user.get("id")
        if isinstance(uid, str):
            self._users[uid] = (display_name(user), avatar(user))
            self._users.move_to_end(uid)
            while len(self._users) > USER_CACHE:
                self._users.popitem(last=False)

    async def user(self, uid: str) -> tuple[str, str | None]:
        if uid in self._users:
            return self._users[uid]
        try:
            response = await self.web.users_info(user=uid)
            self.update(response["user"])
        except Exception as exc:  # a name is not worth losing a message over
            self.log.warning("users.info %s failed (%s); showing the user id", uid, exc)
            return uid, None
        return self._users.get(uid, (uid, None))

    async def names(self, mrkdwn: str) -> dict[str, str]:
        return {uid: (await self.user(uid))[0] for uid in set(mentioned_users(mrkdwn))}


def is_own(msg: Mapping[str, Any], me: Me) -> bool:
    return bool((me.bot_id and msg.get("bot_id") == me.bot_id) or msg.get("user") == me.user_id)


def is_bot(msg: Mapping[str, Any]) -> bool:
    return bool(msg.get("bot_id")) or msg.get("subtype") == "bot_message"


def timestamp(ts: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts or ""), UTC)
    except ValueError:
        return None


async def author_of(msg: Mapping[str, Any], directory: Directory) -> InboundAuthor:
    uid = msg.get("user")
    if (is_bot(msg) and not isinstance(uid, str)) or msg.get("subtype") == "bot_message":
        profile = msg.get("bot_profile") or {}
        name = msg.get("username") or profile.get("name") or msg.get("bot_id") or "bot"
        return InboundAuthor(name=str(name), id=msg.get("bot_id"))
    if not isinstance(uid, str):
        return InboundAuthor(name="unknown")
    name, picture = await directory.user(uid)
    return InboundAuthor(name=name, id=uid, avatar_url=picture)


def attachments(msg: Mapping[str, Any]) -> list[Attachment]:
    """The files of a message as metadata (name, type, size, permalink); the connector
    then downloads and keeps each (see :mod:`.files`)."""
    found = []
    for f in msg.get("files") or []:
        if not isinstance(f, Mapping):
            continue
        url = f.get("permalink") or f.get("url_private")
        size = f.get("size")
        name, mime = f.get("name") or f.get("title"), f.get("mimetype")
        found.append(Attachment(url=url if isinstance(url, str) and url else None,
                                name=clean_filename(name) if isinstance(name, str) else None,
                                mime=mime if isinstance(mime, str) and mime else None,
                                size=size if isinstance(size, int) else None))
    return found


def _change_id(event: Mapping[str, Any]) -> str | None:
    """The change event's own ts: Slack re-delivers it unchanged, so a crash cannot make
    one edit or delete two records."""
    ts = event.get("event_ts") or event.get("ts")
    return str(ts) if ts else None


async def to_inbound(event: Mapping[str, Any], room: str, me: Me, directory: Directory,
                     relay_bots: bool) -> Inbound | None:
    """The roomlink event for one Slack ``message`` event, or None when it is not relayed."""
    subtype = event.get("subtype")
    if subtype == "message_changed":
        msg = event.get("message") or {}
        before = event.get("previous_message") or {}
        if is_own(msg, me) or (is_bot(msg) and not relay_bots) or not msg.get("ts"):
            return None
        if "text" in before and before.get("text") == msg.get("text"):
            return None  # an unfurl or other metadata change: nothing a reader sees
        return Inbound(room=room, author=await author_of(msg, directory), kind=Kind.EDIT,
                       text=await _text(msg, directory), target_native=str(msg["ts"]),
                       native_id=_change_id(event), ts=timestamp(event.get("ts")))
    if subtype == "message_deleted":
        before = event.get("previous_message") or {}
        if is_own(before, me) or (is_bot(before) and not relay_bots):
            return None
        if not event.get("deleted_ts"):
            return None
        return Inbound(room=room, author=await author_of(before, directory), kind=Kind.DELETE,
                       target_native=str(event["deleted_ts"]), native_id=_change_id(event),
                       ts=timestamp(event.get("ts")))
    if is_own(event, me) or (is_bot(event) and not relay_bots) or not event.get("ts"):
        return None
    ts = str(event["ts"])
    author = await author_of(event, directory)
    if subtype in MEMBERSHIP:
        return Inbound(room=room, author=author, kind=MEMBERSHIP[subtype], native_id=ts,
                       text=escape("joined" if MEMBERSHIP[subtype] is Kind.JOIN else "left"),
                       ts=timestamp(ts))
    if subtype in TOPIC:
        return Inbound(room=room, author=author, kind=Kind.TOPIC, native_id=ts,
                       text=to_canonical(str(event.get("topic") or "")), ts=timestamp(ts))
    if subtype not in PLAIN_SUBTYPES:
        return None
    thread = event.get("thread_ts")
    return Inbound(
        room=room,
        author=author,
        text=await _text(event, directory),
        kind=Kind.ACTION if subtype == "me_message" else Kind.MESSAGE,
        native_id=ts,
        reply_to_native=str(thread) if thread and thread != ts else None,
        attachments=attachments(event),
        ts=timestamp(ts),
    )


async def _text(msg: Mapping[str, Any], directory: Directory) -> str:
    raw = msg.get("text")
    text = raw if isinstance(raw, str) else ""
    return to_canonical(text, await directory.names(text), directory.channel_names)
