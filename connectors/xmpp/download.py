"""Files in: what a room member links with an OOB element (XEP-0066, how clients send
an uploaded file) is fetched over HTTP and streamed into every store before the
message is handed in.

Only ``http`` and ``https`` URLs are fetched (a redirect to another scheme fails), and
``aesgcm`` ones (XEP-0454: an encrypted file at the ``https`` URL, its IV and key in the
fragment), decrypted as they stream in; at most ``max_file_bytes`` (a longer
``Content-Length`` is not even read), within ``download_timeout``. A download that
fails, is too big or does not decrypt becomes an attachment with a note (and the
link), and the message still goes. The file's name is the last segment of the URL's
path, as upload services make it; the core cleans it.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from roomlink.connector import FileRefused, Files
from roomlink.message.model import Attachment

CHUNK = 64 * 1024
MAX_REDIRECTS = 3
SCHEMES = ("http", "https", "aesgcm")
TAG = 16  # bytes of the GCM tag that ends an aesgcm file


class DownloadFailed(Exception):
    """The body broke off (said in the note)."""


def name_of(url: str) -> str | None:
    """The file's name as the URL says it (percent-decoded), or None."""
    path = urlsplit(url).path
    return unquote(path.rsplit("/", 1)[-1]) or None


def as_link(url: str) -> Attachment:
    """A shared file not fetched (``download_files: false``): its link, for people."""
    name = name_of(url)
    return Attachment(url=url, name=name, mime=mimetypes.guess_type(name or "")[0],
                      note=f"shared as a link: {url}")


class Downloader:
    def __init__(self, files: Callable[[], Files | None], limit: Callable[[], int | None],
                 timeout: float) -> None:
        self.files = files  # the core's file service, once it has set it
        self.limit = limit  # the largest file kept
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 30))

    async def keep(self, http: aiohttp.ClientSession, room: str, url: str) -> Attachment:
        """The linked file kept in every store, or a note saying why not. A store that
        fails raises (the message is then read again), as does a stop."""
        name = name_of(url)
        guessed = mimetypes.guess_type(name or "")[0]

        def note(why: str) -> Attachment:
            return Attachment(url=url, name=name, mime=guessed, note=f"{why}: {url}")

        files = self.files()
        if files is None:
            return note("not downloaded: this roomlink keeps no files")
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            return note("not downloaded: not an HTTP link")
        secret = _secret(parts.fragment) if parts.scheme == "aesgcm" else None
        if parts.scheme == "aesgcm" and secret is None:
            return note("not downloaded: the link holds no key")
        fetch = urlunsplit(("https", *parts[1:4], "")) if secret else url
        limit = self.limit()
        try:
            async with http.get(fetch, timeout=self.timeout,
                                max_redirects=MAX_REDIRECTS) as resp:
                if resp.status != 200:
                    return note(f"not downloaded: the download answered HTTP {resp.status}")
                size = resp.content_length
                if size is not None and secret:
                    size -= TAG
                if limit is not None and size is not None and size > limit:
                    return note(f"not downloaded: {size} bytes is over the limit of {limit}")
                mime = resp.content_type if "Content-Type" in resp.headers else guessed
                if secret:  # the server holds ciphertext: its type says nothing
                    mime = guessed
                chunks = _chunks(resp)
                if secret:
                    chunks = _decrypted(chunks, *secret)
                return await files.keep(room, name or "file", mime or guessed, chunks,
                                        declared_size=size, max_bytes=limit)
        except FileRefused as exc:
            return note(f"not kept: {exc}")
        except (DownloadFailed, aiohttp.ClientError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            return note(f"not downloaded: the download failed ({why})")


def _secret(fragment: str) -> tuple[bytes, bytes] | None:
    """(key, IV) of an aesgcm link's fragment: a 12- or 16-byte IV, then a 32-byte key,
    in hex (XEP-0454)."""
    try:
        raw = bytes.fromhex(fragment)
    except ValueError:
        return None
    if len(raw) not in (44, 48):
        return None
    return raw[-32:], raw[:-32]


async def _decrypted(chunks: AsyncIterator[bytes], key: bytes, iv: bytes
                     ) -> AsyncIterator[bytes]:
    """The plaintext of an AES-256-GCM stream whose last 16 bytes are its tag. A file that
    does not decrypt raises before the stream ends, so nothing of it is kept."""
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
    held = b""
    async for chunk in chunks:
        held += chunk
        if len(held) > TAG:
            plain = decryptor.update(held[:-TAG])
            held = held[-TAG:]
            if plain:
                yield plain
    # FileRefused, not a broken stream: the core says why in the note as it is
    if len(held) < TAG:
        raise FileRefused("the encrypted file is shorter than its tag")
    try:
        rest = decryptor.finalize_with_tag(held)
    except InvalidTag:
        raise FileRefused("the file does not decrypt with the link's key") from None
    if rest:
        yield rest


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:  # broke off: nothing of it is kept
        raise DownloadFailed(str(exc) or type(exc).__name__) from None
