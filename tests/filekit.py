"""Test kit for files: sample files as people send them, and an API client's side of them
(a multipart POST, a download from ``/v1/files/...``)."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class PeerFile:
    """A file as a person sends or receives it: its name, its type and its bytes."""

    name: str
    type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def png(width: int, height: int, seed: int = 1) -> bytes:
    """A valid PNG of noise (it compresses badly, so it spans many chunks)."""
    noise = random.Random(seed).randbytes(width * height * 3)
    rows = b"".join(b"\x00" + noise[y * width * 3:(y + 1) * width * 3] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def pdf(padding: int = 100_000) -> bytes:
    """A small PDF with a binary stream in it (bytes no text codec would keep)."""
    blob = random.Random(2).randbytes(padding)
    return (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
            + b"2 0 obj\n<< /Length %d >>\nstream\n" % len(blob) + blob
            + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


# a name that climbs out of a folder, is written in Cyrillic ("invoice") and turns its
# end around (U+202E): an .exe that would show as if it were a .png
HOSTILE_NAME = "../../счёт\u202egnp.exe"
SAMPLES = (
    PeerFile("screenshot.png", "image/png", png(160, 120)),
    PeerFile("contract.pdf", "application/pdf", pdf()),
    PeerFile(HOSTILE_NAME, "application/octet-stream", bytes(range(256)) * 64),
)


def clean_name_ok(name: str, sent: str) -> bool:
    """Whether ``name`` is a safe form of ``sent``: no path, no control or bidi
    character, not empty nor a dot name, at most 255 bytes, its letters kept."""
    letters = [c for c in sent if c.isalpha()]
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and len(name.encode()) <= 255
            and not any(unicodedata.category(c) == "Cc" or unicodedata.bidirectional(c) in
                        ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")
                        for c in name)
            and all(c in name for c in letters))


def form(text: str | None, author: str | None, files: tuple[PeerFile, ...] | list[PeerFile],
         reply_to: str | None = None) -> aiohttp.FormData:
    """The multipart body of a POST with files (``text`` None: no ``message`` part)."""
    body = aiohttp.FormData()
    if text is not None or author is not None:
        message: dict[str, Any] = {"text": text or "", "author": author}
        if reply_to is not None:
            message["reply_to"] = reply_to
        body.add_field("message", json.dumps(message), content_type="application/json")
    for f in files:
        body.add_field("file", f.data, filename=f.name, content_type=f.type)
    return body


def listener(room_base: str) -> str:
    """``http://host:port`` of an API room's base URL."""
    return "/".join(room_base.split("/")[:3])


async def post_files(session: aiohttp.ClientSession, room_base: str, text: str | None,
                     author: str | None, files: tuple[PeerFile, ...] | list[PeerFile],
                     headers: dict[str, str] | None = None, reply_to: str | None = None
                     ) -> tuple[int, dict[str, Any]]:
    """POST ``files`` (and a message) to an API room; the status and the JSON answer."""
    async with session.post(f"{room_base}/messages", data=form(text, author, files, reply_to),
                            headers=headers or {}) as resp:
        assert resp.content_type == "application/json", (resp.status, await resp.text())
        answer: dict[str, Any] = await resp.json()
        return resp.status, answer


async def download(session: aiohttp.ClientSession, room_base: str, url: str,
                   headers: dict[str, str] | None = None
                   ) -> tuple[int, bytes, dict[str, str]]:
    """GET a frame's attachment ``url`` (a path on the room's listener)."""
    async with session.get(listener(room_base) + url, headers=headers or {}) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def received(session: aiohttp.ClientSession, room_base: str, frame: dict[str, Any],
                   headers: dict[str, str] | None = None) -> list[PeerFile]:
    """The files of a stream frame, fetched from its listener."""
    files = []
    for att in frame.get("attachments", []):
        status, data, _ = await download(session, room_base, att["url"], headers)
        assert status == 200, (status, att)
        files.append(PeerFile(att["name"], att["type"], data))
    return files
