"""Files for the Bot API test server (server.py): the files it holds, image headers it
reads like Telegram's photo checks, and multipart forms read without holding a too-big
upload in memory.

From the Bot API reference (https://core.telegram.org/bots/api): a ``File`` is
``{file_id, file_unique_id, file_size, file_path}`` and downloads from
``/file/bot<token>/<file_path>``; ``getFile`` serves files of up to 20 MB; a photo is
sent "at most 10 MB in size", its "width and height must not exceed 10000 in total" and
their "ratio must be at most 20"; other files up to 50 MB.
"""

from __future__ import annotations

import mimetypes
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

MB = 1024 * 1024
MAX_DOWNLOAD = 20 * MB
MAX_PHOTO = 10 * MB
MAX_UPLOAD = 50 * MB
MAX_CAPTION = 1024

# the folder of file_path per kind, as the real server names them
FOLDERS = {"photo": "photos", "document": "documents", "audio": "music", "voice": "voice",
           "video": "videos", "animation": "animations", "sticker": "stickers",
           "video_note": "video_notes", "thumbnail": "thumbnails"}


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    size: int  # what Telegram says; len(data) unless a test makes it lie

    def json(self) -> dict[str, Any]:
        """A ``File`` object, as getFile answers it."""
        return {"file_id": self.file_id, "file_unique_id": self.file_unique_id,
                "file_size": self.size, "file_path": self.file_path}


@dataclass
class Upload:
    """One file part of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


class TooLarge(Exception):
    """The request body is over the upload limit (413 Request Entity Too Large)."""


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF or WebP header, or None: not an image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            h = int.from_bytes(data[27:30], "little") + 1
            return w, h
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return int(w) & 0x3FFF, int(h) & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return int(w), int(h)
            i += 2 + length
    return None


def png(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG header of that size (enough for the photo checks), then ``payload``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
            + payload)


def guess_type(filename: str | None, given: str | None) -> str:
    if given and given != "application/octet-stream":
        return given
    return (mimetypes.guess_type(filename or "", strict=False)[0]
            or given or "application/octet-stream")


async def read_form(request: web.Request) -> dict[str, Any]:
    """The fields of a multipart/form-data body: strings, and :class:`Upload` for file
    parts. A file part over 50 MB is read to its end and refused (:class:`TooLarge`)."""
    fields: dict[str, Any] = {}
    reader = await request.multipart()
    too_large = False
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: no Bot API method sends one
        name, filename = part.name, part.filename
        if filename is None:
            text = await part.text()
            if name:
                fields[name] = text
            continue
        data = bytearray()
        while True:
            chunk = await part.read_chunk(64 * 1024)
            if not chunk:
                break
            if len(data) + len(chunk) > MAX_UPLOAD:
                too_large = True
                data.clear()
                continue  # drain the rest: an answer mid-upload would break the client
            if not too_large:
                data.extend(chunk)
        if name:
            content_type = part.headers.get("Content-Type")
            fields[name] = Upload(filename, content_type, bytes(data))
    if too_large:
        raise TooLarge
    return fields
