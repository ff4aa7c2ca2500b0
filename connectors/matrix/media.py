"""Files both ways through the homeserver's media repository.

In: a file event's ``mxc://`` URL is fetched from the authenticated media endpoint
(``/_matrix/client/v1/media/download``, with the bot's token: Synapse 1.120 on refuses
new media to anonymous readers), falling back to the legacy ``/_matrix/media/v3`` one
on a homeserver without it, and streamed into every store (``ctx.files.keep``). In an
encrypted room the event carries an ``EncryptedFile`` (key, iv, SHA-256 of the
ciphertext): the bytes are decrypted (AES-256-CTR) as they stream and the hash checked
at the end, so what is kept is the file its sender sent, byte for byte, and a file that
fails its hash is kept nowhere. Streaming (rather than nio's ``download`` and
``decrypt_attachment``, which hold the whole file in memory) keeps a large file from
costing its size in RAM.

Out: each kept file is uploaded with nio's ``upload`` (encrypted for an encrypted room:
the event then carries the ``file`` object instead of a ``url``) and becomes the content
of an ``m.image`` / ``m.file`` / ``m.audio`` / ``m.video`` event whose ``body`` is the
file's name. A homeserver that refuses the upload as too large (413 ``M_TOO_LARGE``)
makes a :class:`FileRefused`: the core then posts the text with a ``[file: ...]`` line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nio import UploadResponse

from roomlink.connector import ConnectorError, FileRefused, Files, RateLimited
from roomlink.message.model import Attachment

MB = 1024 * 1024
DEFAULT_MAX = 50 * MB  # Synapse's default max_upload_size, when the homeserver says none
CHUNK = 64 * 1024
MXC = re.compile(r"mxc://([A-Za-z0-9.:\[\]-]+)/([A-Za-z0-9_-]+)")
# https://spec.matrix.org/v1.12/client-server-api/#mroommessage-msgtypes
KINDS = (("image/", "m.image"), ("audio/", "m.audio"), ("video/", "m.video"))


@dataclass(frozen=True)
class Remote:
    """A file a Matrix event points at."""

    url: str  # mxc://server/media-id
    name: str
    mime: str | None
    size: int | None
    secret: dict[str, Any] | None  # the EncryptedFile of an encrypted room's event


class DownloadFailed(Exception):
    """The file could not be fetched or decrypted (said in the note)."""


def _unb64(value: Any, urlsafe: bool = False) -> bytes:
    if not isinstance(value, str):
        raise DownloadFailed("the event's key material is missing")
    padded = value + "=" * (-len(value) % 4)
    try:
        return (base64.urlsafe_b64decode if urlsafe else base64.b64decode)(padded)
    except (binascii.Error, ValueError):
        raise DownloadFailed("the event's key material is not base64") from None


async def _decrypted(chunks: AsyncIterator[bytes], secret: dict[str, Any]
                     ) -> AsyncIterator[bytes]:
    """``chunks`` of an encrypted attachment, decrypted; raises at the end when the
    ciphertext is not the one the sender hashed (the core then keeps nothing of it)."""
    key = _unb64((secret.get("key") or {}).get("k"), urlsafe=True)
    iv = _unb64(secret.get("iv"))
    expected = _unb64((secret.get("hashes") or {}).get("sha256"))
    if len(key) != 32 or len(iv) != 16:
        raise DownloadFailed("the event's key or iv has the wrong length")
    decryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    hasher = hashlib.sha256()
    async for chunk in chunks:
        hasher.update(chunk)
        yield decryptor.update(chunk)
    if hasher.digest() != expected:
        raise DownloadFailed("the file does not match its SHA-256 (tampered or truncated)")
    tail = decryptor.finalize()
    if tail:
        yield tail


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:  # broke off: nothing is kept
        raise DownloadFailed(type(exc).__name__) from None


def _size(size: int | None) -> str:
    return f"{size / MB:.1f} MB" if size is not None else "size unknown"


class Media:
    """The connector's traffic with the media repository."""

    def __init__(self, homeserver: str, timeout: float, files: Callable[[], Files | None]
                 ) -> None:
        self.homeserver = homeserver
        self.files = files  # the core's file service, once it has set it
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                              sock_read=timeout)
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def upload_limit(self, token: str) -> int | None:
        """The homeserver's largest upload (``m.upload.size``), or None if it says none."""
        for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config"):
            try:
                async with self._session().get(
                        self.homeserver + path,
                        headers={"Authorization": f"Bearer {token}"}) as answer:
                    if answer.status != 200:
                        continue
                    size = (await answer.json(content_type=None)).get("m.upload.size")
                    return size if isinstance(size, int) and size > 0 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
        return None

    # -- in ------------------------------------------------------------------------------
    def _note(self, remote: Remote, note: str) -> Attachment:
        return Attachment(name=remote.name, mime=remote.mime, size=remote.size, note=note)

    async def keep(self, room: str, remote: Remote, token: str, limit: int | None
                   ) -> Attachment:
        """The file kept in every store, or its metadata with a note saying why not. A
        store that fails raises (the caller retries the whole event), as does a stop."""
        files = self.files()
        if files is None:
            return self._note(remote, "not downloaded: this roomlink keeps no files")
        if limit is not None and remote.size is not None and remote.size > limit:
            return self._note(remote, f"not downloaded: {_size(remote.size)} is over the "
                                      f"limit of {_size(limit)}")
        found = MXC.fullmatch(remote.url)
        if found is None:
            return self._note(remote, "not downloaded: the event names no mxc:// file")
        server, media_id = found.groups()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            for base in ("/_matrix/client/v1/media/download", "/_matrix/media/v3/download"):
                url = f"{self.homeserver}{base}/{server}/{media_id}"
                async with self._session().get(url, headers=headers) as response:
                    if response.status in (404, 405) and base.startswith("/_matrix/client"):
                        if await _unrecognized(response):  # a homeserver before v1.11
                            continue
                    if response.status != 200:
                        return self._note(remote, f"not downloaded: the homeserver answered "
                                                  f"HTTP {response.status}")
                    chunks = _body(response)
                    if remote.secret is not None:
                        chunks = _decrypted(chunks, remote.secret)
                    # an encrypted file's ciphertext is as long as its plaintext
                    return await files.keep(room, remote.name, remote.mime, chunks,
                                            declared_size=remote.size, max_bytes=limit)
            return self._note(remote, "not downloaded: the homeserver serves no media")
        except FileRefused as exc:
            if isinstance(exc.__cause__, DownloadFailed):  # the stream's own reason
                return self._note(remote, f"not kept: {exc.__cause__}")
            return self._note(remote, f"not kept: {exc}")
        except (DownloadFailed, aiohttp.ClientError, TimeoutError) as exc:
            why = str(exc) if isinstance(exc, DownloadFailed) else type(exc).__name__
            return self._note(remote, f"not downloaded: the download failed ({why})")

    # -- out -----------------------------------------------------------------------------
    async def content(self, client: Any, att: Attachment, encrypt: bool) -> dict[str, Any]:
        """Upload one kept file; the content of the event that shows it. FileRefused when
        the homeserver will not take it."""
        files = self.files()
        if files is None:
            raise FileRefused(f"{att.name}: this roomlink keeps no files")
        name = att.name or "file"
        mime = att.mime or "application/octet-stream"

        def provider(_429: int, _timeouts: int) -> AsyncIterator[bytes]:
            return files.open(att)  # again from the start when nio retries

        try:
            answer, secret = await client.upload(provider, content_type=mime, filename=name,
                                                 encrypt=encrypt, filesize=att.size)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectorError(f"upload of {name}: {type(exc).__name__} {exc}") from exc
        if not isinstance(answer, UploadResponse):
            code = getattr(answer, "status_code", None)
            if code == "M_TOO_LARGE":
                raise FileRefused(f"the homeserver refused {name} as too large ({answer})")
            if code == "M_LIMIT_EXCEEDED":
                wait = (getattr(answer, "retry_after_ms", None) or 5000) / 1000
                raise RateLimited(f"upload of {name}: {answer}", retry_after=wait)
            raise ConnectorError(f"upload of {name}: {answer}")
        msgtype = next((kind for prefix, kind in KINDS if mime.startswith(prefix)), "m.file")
        content: dict[str, Any] = {"msgtype": msgtype, "body": name, "filename": name,
                                   "info": {"mimetype": mime, "size": att.size},
                                   "m.mentions": {}}
        if encrypt:
            content["file"] = {**(secret or {}), "url": answer.content_uri}
        else:
            content["url"] = answer.content_uri
        return content


async def _unrecognized(response: aiohttp.ClientResponse) -> bool:
    """Whether a 404/405 means "no such endpoint" rather than "no such file"."""
    try:
        data = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return response.status == 405
    return not isinstance(data, dict) or data.get("errcode") in ("M_UNRECOGNIZED", None)


def remote_file(content: dict[str, Any]) -> Remote | None:
    """The file an ``m.image``/``m.file``/``m.audio``/``m.video`` content points at."""
    info = content.get("info")
    info = info if isinstance(info, dict) else {}
    secret = content.get("file")
    secret = secret if isinstance(secret, dict) else None
    url = secret.get("url") if secret is not None else content.get("url")
    if not isinstance(url, str):
        return None
    filename, body = content.get("filename"), content.get("body")
    name = filename if isinstance(filename, str) and filename else body
    mime, size = info.get("mimetype"), info.get("size")
    return Remote(url=url, name=name if isinstance(name, str) and name else "file",
                  mime=mime if isinstance(mime, str) and mime else None,
                  size=size if isinstance(size, int) and size >= 0 else None,
                  secret=secret)
