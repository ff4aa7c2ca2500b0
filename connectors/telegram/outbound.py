"""What one delivered part becomes in Telegram: the HTML of a text message, a file's
caption, the steps (texts and files, in order) a part is posted as, and the call that
posts each step. Pure, apart from the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ParseMode

from roomlink.connector import FileRefused, Files
from roomlink.message.model import Attachment, Kind, Outbound

from .bot import RawBot
from .convert import MAX_VISIBLE, byline, compose, split_html, visible_length
from .files import MAX_CAPTION, upload

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
EDIT_NOTE_ROOM = 100  # visible characters kept free for the note on an edited split message


def html(out: Outbound) -> str:
    m = out.message
    kind = Kind.MESSAGE if m.kind is Kind.EDIT else m.kind
    return compose(kind.value, out.display_name, m.author.name, out.text,
                   [(a.url, a.name) for a in m.attachments if a.url and shown_by_url(a)])


def caption(out: Outbound) -> str | None:
    """The caption of a file message: the bold author and the text, or only the author
    when there is no text."""
    if out.text.strip() or any(shown_by_url(a) for a in out.message.attachments):
        return html(out)
    return byline(out.display_name or out.message.author.name)


def steps(out: Outbound) -> list[tuple[str | None, Attachment | None]]:
    """What one part becomes, in order: (HTML, None) for a text message, (caption,
    file) for a file. A text too long for a caption goes first, on its own."""
    if not out.files:
        return [(part, None) for part in split_html(html(out))]
    first = caption(out)
    alone = byline(out.display_name or out.message.author.name)
    rest: list[tuple[str | None, Attachment | None]] = [(alone, f) for f in out.files[1:]]
    if first is None or visible_length(first) <= MAX_CAPTION:
        return [(first, out.files[0]), *rest]
    texts: list[tuple[str | None, Attachment | None]] = [
        (part, None) for part in split_html(first)]
    return [*texts, (alone, out.files[0]), *rest]


def poster(
    bot: RawBot, files: Files | None, text: str | None, file: Attachment | None,
    reply: str | None,
) -> Callable[[int | str], Awaitable[Message]]:
    """The Bot API call that posts one step of a part into a chat."""
    if file is not None:
        if files is None:
            raise FileRefused("this roomlink keeps no files to post")
        return lambda chat: upload(bot, files, chat, file, text, reply)

    async def post(chat: int | str) -> Message:
        return await bot.send_message(
            chat, text or "", parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
            reply_parameters=ReplyParameters(int(reply), allow_sending_without_reply=True)
            if reply and reply.isdigit() else None)

    return post


def shown_by_url(a: Attachment) -> bool:
    """A file known only by the platform's URL: the core leaves it to the connector to
    show (kept files and files with a note come as the core's ``[file: ...]`` lines)."""
    return bool(a.url) and not a.sha256 and not a.note


def edited_text(out: Outbound, more_text: bool) -> str:
    """The new text of the first message of a delivered copy (``more_text``: the copy
    has further text messages, which an edit leaves as they are)."""
    markup = html(out)
    parts = split_html(markup)
    if len(parts) == 1 and not more_text:
        return parts[0]
    # only the first part is edited: say so, in room kept free for it
    return split_html(markup, MAX_VISIBLE - EDIT_NOTE_ROOM)[0] + (
        "\n<i>(edited; the new text is longer than one message and ends here)</i>"
        if len(parts) > 1 else
        "\n<i>(edited; this replaces the whole text, the parts after this "
        "message are outdated)</i>")


def edited_caption(out: Outbound) -> str:
    """The new caption of a file message; the file stays, the caption ends short."""
    text = caption(out) or ""
    if visible_length(text) > MAX_CAPTION:
        text = split_html(text, MAX_CAPTION - EDIT_NOTE_ROOM)[0]
        text += "\n<i>(edited; the new text is longer than a caption and ends here)</i>"
    return text
