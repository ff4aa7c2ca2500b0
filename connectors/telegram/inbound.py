"""One Bot API update -> the events roomlink relays (pure: the connector decides the room)."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Message, User

from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Inbound, InboundAuthor, Kind

from .convert import to_canonical


@dataclass(frozen=True, slots=True)
class Seen:
    """What the connector needs to know about a message before it maps it."""

    chat_id: int
    chat_username: str | None
    migrate_to: int | None  # the group became this supergroup
    migrate_from: int | None  # this supergroup was that group


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
    files = attachments(message)
    if not text.strip() and not files:
        return []  # a service message (pinned, photo changed ...) or an empty one
    if edited:
        return [Inbound(room=room, author=author, text=text, kind=Kind.EDIT,
                        target_native=native, attachments=files, ts=ts)]
    reply = message.reply_to_message
    if reply is not None and reply.forum_topic_created is not None:
        reply = None  # in a forum every message "answers" its topic's first message
    return [Inbound(room=room, author=author, text=text, native_id=native,
                    reply_to_native=str(reply.message_id) if reply else None,
                    attachments=files, ts=ts)]


def attachments(message: Message) -> list[Attachment]:
    """File metadata (the file is not downloaded): ``tg-file:<file_id>`` names it."""
    found: list[Attachment] = []

    def add(file_id: str, name: str | None, mime: str | None, size: int | None) -> None:
        found.append(Attachment(url=f"tg-file:{file_id}", name=name, mime=mime, size=size))

    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        add(best.file_id, "photo.jpg", "image/jpeg", best.file_size)
    # an animation comes with a document copy of itself, for old clients: count it once
    document = message.document if message.animation is None else None
    for media, default in ((document, "document"), (message.video, "video.mp4"),
                           (message.audio, "audio"), (message.animation, "animation.mp4")):
        if media is not None:
            add(media.file_id, getattr(media, "file_name", None) or default,
                getattr(media, "mime_type", None), media.file_size)
    if message.voice is not None:
        v = message.voice
        add(v.file_id, "voice.ogg", v.mime_type or "audio/ogg", v.file_size)
    if message.video_note is not None:
        add(message.video_note.file_id, "video_note.mp4", "video/mp4",
            message.video_note.file_size)
    if message.sticker is not None:
        s = message.sticker
        mime = ("video/webm" if s.is_video else "application/x-tgsticker" if s.is_animated
                else "image/webp")
        add(s.file_id, f"sticker {s.emoji}" if s.emoji else "sticker", mime, s.file_size)
    return found
