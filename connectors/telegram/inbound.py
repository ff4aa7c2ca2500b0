"""One Bot API update -> the events roomlink relays (pure: the connector decides the room)."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any

from telegram import Message, Update, User

from roomlink.message.markup import escape
from roomlink.message.model import Inbound, InboundAuthor, Kind

from .convert import to_canonical


@dataclass(frozen=True, slots=True)
class Seen:
    """What the connector needs to know about a message before it maps it."""

    chat_id: int
    chat_username: str | None
    migrate_to: int | None  # the group became this supergroup
    migrate_from: int | None  # this supergroup was that group


def album_of(raw: dict[str, Any]) -> tuple[int, str] | None:
    """(chat id, media_group_id) of a new message that is one item of an album."""
    message = raw.get("message") or raw.get("channel_post")
    if not isinstance(message, dict) or not message.get("media_group_id"):
        return None
    chat = message.get("chat")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
        return None
    return chat["id"], str(message["media_group_id"])


def albums(updates: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The updates in order, the consecutive items of one album together."""
    out: list[list[dict[str, Any]]] = []
    for raw in updates:
        key = album_of(raw)
        if key is not None and out and album_of(out[-1][0]) == key:
            out[-1].append(raw)
        else:
            out.append([raw])
    return out


def seen(message: Message) -> Seen:
    return Seen(message.chat.id, message.chat.username, message.migrate_to_chat_id,
                message.migrate_from_chat_id)


def author_of(user: User) -> InboundAuthor:
    name = " ".join(p for p in (user.first_name, user.last_name) if p).strip()
    if not name:
        name = f"@{user.username}" if user.username else str(user.id)
    return InboundAuthor(name=name, id=str(user.id))


def events(room: str, message: Message, edited: bool, me: int, relay_bots: bool
           ) -> list[Inbound]:
    """The inbound events one message in a configured room stands for."""
    sender = message.from_user
    if sender is not None and (sender.id == me or (sender.is_bot and not relay_bots)):
        return []  # our own posts, and other bots unless asked
    if sender is not None:
        author = author_of(sender)
    elif message.sender_chat is not None:  # a channel post, an anonymous admin
        chat = message.sender_chat
        author = InboundAuthor(name=chat.title or chat.username or str(chat.id), id=str(chat.id))
    else:
        raise ValueError("a message with neither sender nor sender_chat")
    native = str(message.message_id)
    ts = message.edit_date if edited and message.edit_date else message.date
    out: list[Inbound] = []
    for member in message.new_chat_members or ():
        if member.id != me:
            out.append(Inbound(room=room, author=author_of(member), text=escape("joined"),
                               kind=Kind.JOIN, native_id=f"{native}:join:{member.id}", ts=ts))
    left = message.left_chat_member
    if left is not None and left.id != me:
        out.append(Inbound(room=room, author=author_of(left), text=escape("left"),
                           kind=Kind.PART, native_id=f"{native}:part:{left.id}", ts=ts))
    if message.new_chat_title:
        out.append(Inbound(room=room, author=author, text=escape(message.new_chat_title),
                           kind=Kind.TOPIC, native_id=native, ts=ts))
    if out:
        return out
    text = to_canonical(message.text or message.caption or "",
                        message.entities or message.caption_entities or ())
    files = remote_files(message)  # downloaded by the connector, for new messages only
    if not text.strip() and not files:
        return []  # a service message (pinned, photo changed ...) or an empty one
    if edited:
        # an edit changes the caption; the file stays the one relayed with the message
        return [Inbound(room=room, author=author, text=text, kind=Kind.EDIT,
                        target_native=native, ts=ts)]
    reply = message.reply_to_message
    if reply is not None and reply.forum_topic_created is not None:
        reply = None  # in a forum every message "answers" its topic's first message
    return [Inbound(room=room, author=author, text=text, native_id=native,
                    reply_to_native=str(reply.message_id) if reply else None, ts=ts)]


@dataclass(frozen=True, slots=True)
class Remote:
    """One file of a Telegram message, before it is downloaded."""

    file_id: str  # what getFile takes (valid for this bot only)
    unique_id: str  # the same for every bot and over time: names a photo
    name: str  # the file's name, or a made-up one (a photo has none)
    mime: str | None
    size: int | None  # as the update says; may be missing


def _name(given: str | None, prefix: str, unique_id: str, mime: str | None,
          default_ext: str) -> str:
    if given and given.strip():
        return given
    ext = (mimetypes.guess_extension(mime, strict=False) if mime else None) or default_ext
    return f"{prefix}-{unique_id}{ext}"


def remote_files(message: Message) -> list[Remote]:
    """The files of a message: the largest size of a photo, a document, audio, voice,
    video, video note, animation and sticker."""
    found: list[Remote] = []
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(Remote(best.file_id, best.file_unique_id,
                            f"photo-{best.file_unique_id}.jpg", "image/jpeg", best.file_size))
    # an animation comes with a document copy of itself, for old clients: count it once
    document = message.document if message.animation is None else None
    media = ((document, "document", ""), (message.video, "video", ".mp4"),
             (message.audio, "audio", ".mp3"), (message.animation, "animation", ".mp4"))
    for item, prefix, ext in media:
        if item is not None:
            mime = getattr(item, "mime_type", None)
            found.append(Remote(item.file_id, item.file_unique_id,
                                _name(getattr(item, "file_name", None), prefix,
                                      item.file_unique_id, mime, ext), mime, item.file_size))
    if message.voice is not None:
        v = message.voice
        mime = v.mime_type or "audio/ogg"
        found.append(Remote(v.file_id, v.file_unique_id, f"voice-{v.file_unique_id}.ogg", mime,
                            v.file_size))
    if message.video_note is not None:
        n = message.video_note
        found.append(Remote(n.file_id, n.file_unique_id, f"video-note-{n.file_unique_id}.mp4",
                            "video/mp4", n.file_size))
    if message.sticker is not None:
        s = message.sticker
        mime, ext = (("video/webm", ".webm") if s.is_video else
                     ("application/x-tgsticker", ".tgs") if s.is_animated else
                     ("image/webp", ".webp"))
        found.append(Remote(s.file_id, s.file_unique_id, f"sticker-{s.file_unique_id}{ext}",
                            mime, s.file_size))
    return found


def message_of(update: Update) -> tuple[Message | None, bool]:
    if update.message or update.channel_post:
        return update.message or update.channel_post, False
    if update.edited_message or update.edited_channel_post:
        return update.edited_message or update.edited_channel_post, True
    return None, False  # another kind of update: not ours to relay
