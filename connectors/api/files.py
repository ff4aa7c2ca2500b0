"""Files on the HTTP API: a ``multipart/form-data`` POST in, ``/v1/files/...`` out.

An upload is read part by part with aiohttp's multipart reader and each ``file`` part
is streamed, a chunk at a time, into ``ctx.files.keep`` (every store of the room's
pipes): a file is never held whole in memory, whatever its size. A part over
``max_file_bytes`` is cut off at the first chunk past the limit and nothing of it is
kept; the request is answered 413 with the usual JSON error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from roomlink.connector import ShuttingDown
from roomlink.connector.files import CHUNK, FileRefused, Files
from roomlink.connector.httpserve import file_type
from roomlink.message.model import Attachment

# what a broken or cut-off body raises while aiohttp parses it
BODY_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, AssertionError, LookupError, RuntimeError, EOFError, ConnectionError,
    aiohttp.ClientPayloadError, HttpProcessingError,
)


class Refused(Exception):
    """The upload is refused: answer ``status`` with ``message`` as the JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    """What a multipart POST carried: the ``message`` part's JSON (None without one) and
    the files, already kept."""

    message: dict[str, Any] | None = None
    files: list[Attachment] = field(default_factory=list)


class _Chunks:
    """One part's bytes, in chunks, that notices the part running over ``limit`` (before
    the chunk is handed on) or the body breaking off."""

    def __init__(self, part: BodyPartReader, limit: int) -> None:
        self.part = part
        self.limit = limit
        self.size = 0
        self.too_big = False
        self.broken = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self.part.read_chunk(CHUNK)
            except BODY_ERRORS:
                self.broken = True
                raise
            if not chunk:
                return
            self.size += len(chunk)
            if self.size > self.limit:
                self.too_big = True
                raise FileRefused(f"a file is larger than {self.limit} bytes")
            yield chunk


async def _small(part: BodyPartReader, limit: int) -> bytes:
    """A part that must be small (the ``message`` JSON), read whole up to ``limit``."""
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise Refused(413, "the 'message' part is too large")
    return bytes(data)


async def read_upload(request: web.Request, files: Files | None, room: str, *,
                      max_file_bytes: int, max_files: int, max_message: int) -> Upload:
    """Read a multipart POST: its ``message`` part and its ``file`` parts, each file kept
    as it streams in. Raises :class:`Refused` with the answer to give."""
    if files is None:
        raise Refused(415, "this roomlink keeps no files: post JSON")
    try:
        reader = await request.multipart()
    except BODY_ERRORS:
        raise Refused(400, "the body is not valid multipart/form-data") from None
    upload = Upload()
    while True:
        try:
            part = await reader.next()
        except BODY_ERRORS:
            raise Refused(400, "the body is not valid multipart/form-data") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise Refused(400, "nested multipart parts are not taken")
        if part.name == "message":
            if upload.message is not None:
                raise Refused(400, "more than one 'message' part")
            upload.message = await _message(part, max_message)
        elif part.name == "file":
            if len(upload.files) >= max_files:
                raise Refused(413, f"more than {max_files} files in one message (max_files)")
            upload.files.append(await _keep(part, files, room, max_file_bytes))
        else:
            raise Refused(400, f"unknown part {part.name!r}: only 'message' and 'file' parts")
    return upload


async def _message(part: BodyPartReader, limit: int) -> dict[str, Any]:
    try:
        raw = await _small(part, limit)
    except BODY_ERRORS:
        raise Refused(400, "the body is not valid multipart/form-data") from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refused(400, "the 'message' part is not UTF-8") from None
    except RecursionError:
        raise Refused(400, "the 'message' part is nested too deeply") from None
    except ValueError:
        raise Refused(400, "the 'message' part is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the 'message' part must be a JSON object")
    return body


def _filename(part: BodyPartReader) -> str:
    """The part's file name. RFC 7578 lets a client percent-encode it (aiohttp's client
    does; browsers and curl send UTF-8 as is): decoded when it decodes as UTF-8."""
    name = part.filename or ""
    if "%" in name:
        with contextlib.suppress(UnicodeDecodeError):
            name = unquote(name, errors="strict")
    return name


async def _keep(part: BodyPartReader, files: Files, room: str, limit: int) -> Attachment:
    chunks = _Chunks(part, limit)
    try:
        return await files.keep(room, _filename(part), file_type(
            part.headers.get(aiohttp.hdrs.CONTENT_TYPE)), chunks.__aiter__(), max_bytes=limit)
    except Exception as exc:
        # the flags first: keep may wrap what the chunks raised
        if chunks.too_big:
            raise Refused(413, f"a file is larger than {limit} bytes (max_file_bytes)") from None
        if chunks.broken:
            raise Refused(400, "the body broke off in the middle of a file") from None
        if isinstance(exc, FileRefused):
            raise Refused(413, str(exc)) from None
        if isinstance(exc, ShuttingDown):
            raise Refused(503, "roomlink is shutting down; retry") from None
        raise Refused(503, "the file could not be stored; retry") from exc
