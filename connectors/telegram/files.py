"""Files both ways: a received file is fetched with ``getFile`` and streamed from
``{api_url}/file/bot{token}/{file_path}`` into every store; a file to post is uploaded
as multipart with ``sendPhoto`` or ``sendDocument``.

The Bot API's limits (https://core.telegram.org/bots/api): a bot downloads files of up
to 20 MB (``getFile`` answers ``400 file is too big`` above), sends photos of up to
10 MB and other files of up to 50 MB; a caption holds 1,024 characters after parsing.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO

import httpx
from telegram import InputFile, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, TelegramError

from roomlink.connector import FileRefused, Files
from roomlink.message.model import Attachment

from .bot import RawBot
from .inbound import Remote

MB = 1024 * 1024
MAX_DOWNLOAD = 20 * MB  # getFile refuses larger files
MAX_PHOTO = 10 * MB  # sendPhoto
MAX_UPLOAD = 50 * MB  # sendDocument
MAX_CAPTION = 1024  # visible characters of a caption
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
CHUNK = 64 * 1024
# what sendPhoto answers for an image it cannot take as a photo (too big, too large a
# side, not an image after all): the same file then goes as a document
PHOTO_REFUSALS = ("photo_", "image_process_failed")  # python-telegram-bot capitalizes them


class DownloadFailed(Exception):
    """The file could not be fetched from the Bot API (said in the note)."""


def _size(size: int | None) -> str:
    return f"{size / MB:.1f} MB" if size is not None else "size unknown"


class Fetcher:
    """Downloads received files into the stores (``ctx.files.keep``)."""

    def __init__(self, bot: RawBot, files: Callable[[], Files | None], timeout: float) -> None:
        self.bot = bot
        self.files = files  # the core's file service, once it has set it
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def close(self) -> None:
        await self.http.aclose()

    def _note(self, remote: Remote, note: str) -> Attachment:
        return Attachment(name=remote.name, mime=remote.mime, size=remote.size, note=note)

    async def keep(self, room: str, remote: Remote) -> Attachment:
        """The file kept in every store, or its metadata with a note saying why not. A
        store that fails raises (the caller retries the whole update), as does a stop."""
        files = self.files()
        if files is None:  # a core without file keeping: metadata only
            return self._note(remote, "not downloaded: this roomlink keeps no files")
        if remote.size is not None and remote.size > MAX_DOWNLOAD:
            return self._too_big(remote, remote.size)
        try:
            got = await self.bot.get_file(remote.file_id)
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                return self._too_big(remote, remote.size)
            return self._note(remote, f"not downloaded: Telegram refused it ({exc.message})")
        except TelegramError as exc:
            return self._note(remote, f"not downloaded: getFile failed ({exc.message})")
        url = got.file_path
        if not url or not url.startswith(("http://", "https://")):
            return self._note(remote, "not downloaded: Telegram gave no download path")
        size = got.file_size if got.file_size is not None else remote.size
        if size is not None and size > MAX_DOWNLOAD:
            return self._too_big(remote, size)
        try:
            async with self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    return self._note(remote, f"not downloaded: the download answered "
                                              f"HTTP {response.status_code}")
                return await files.keep(room, remote.name, remote.mime,
                                             _chunks(response), declared_size=size,
                                             max_bytes=MAX_DOWNLOAD)
        except FileRefused as exc:
            return self._note(remote, f"not kept: {exc}")
        except (DownloadFailed, httpx.HTTPError) as exc:
            # the token is in the URL: say what failed, never where
            why = str(exc) if isinstance(exc, DownloadFailed) else type(exc).__name__
            return self._note(remote, f"not downloaded: the download failed ({why})")

    def _too_big(self, remote: Remote, size: int | None) -> Attachment:
        return self._note(remote, f"not downloaded: {_size(size)} is over the Telegram Bot "
                                  f"API's 20 MB download limit for bots")


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes(CHUNK):
            yield chunk
    except httpx.HTTPError as exc:  # broke off: the core keeps nothing of it
        raise DownloadFailed(type(exc).__name__) from None


# -- out ---------------------------------------------------------------------------------

def is_photo(att: Attachment) -> bool:
    return (att.mime or "").lower() in PHOTO_TYPES and (att.size or 0) <= MAX_PHOTO


async def _spool(files: Files, att: Attachment) -> IO[bytes]:
    """The file's bytes in an unnamed temporary file: httpx then streams the multipart
    body from it in 64 KiB reads, so an upload never holds the file in memory."""
    spool = tempfile.TemporaryFile()  # closed by the caller
    try:
        async for chunk in files.open(att):
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


async def upload(bot: RawBot, files: Files, chat: int | str, att: Attachment,
                 caption: str | None, reply: str | None) -> Message:
    """Post one kept file; FileRefused when Telegram will not take it (the core then
    sends the text with a ``[file: ...]`` line instead)."""
    if att.size is not None and att.size > MAX_UPLOAD:
        raise FileRefused(f"{att.name}: {_size(att.size)} is over Telegram's 50 MB upload limit")
    reply_to = (ReplyParameters(int(reply), allow_sending_without_reply=True)
                if reply and reply.isdigit() else None)
    photo = is_photo(att)
    spool = await _spool(files, att)
    try:
        for method in (["photo", "document"] if photo else ["document"]):
            spool.seek(0)
            item = InputFile(spool, filename=att.name or "file", read_file_handle=False)
            item.mimetype = att.mime or "application/octet-stream"
            try:
                if method == "photo":
                    return await bot.send_photo(chat, item, caption=caption,
                                                parse_mode=ParseMode.HTML,
                                                reply_parameters=reply_to)
                return await bot.send_document(chat, item, caption=caption,
                                               parse_mode=ParseMode.HTML,
                                               reply_parameters=reply_to)
            except BadRequest as exc:
                why = exc.message.lower()
                if method == "photo" and any(m in why for m in PHOTO_REFUSALS):
                    continue  # not as a photo: as a file then
                if "chat not found" in why:
                    raise  # the chat's problem, not the file's
                raise FileRefused(f"Telegram refused {att.name}: {exc.message}") from exc
            except NetworkError as exc:
                if "too large" in exc.message.lower():  # 413 Request Entity Too Large
                    raise FileRefused(f"Telegram refused {att.name}: {exc.message}") from exc
                raise
        raise AssertionError("unreachable: the document attempt returns or raises")
    finally:
        spool.close()
