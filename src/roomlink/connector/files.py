"""Files on the plugin surface: how a connector keeps a file it received and reads one
it must post.

Receiving: for each file of an inbound event, the connector streams the bytes through
``await ctx.files.keep(room, name, mime, chunks)`` *before* it hands the event in; the
core writes them, fsync'd and content-addressed by SHA-256, into the store of every
party of every pipe the room is in, and answers the :class:`Attachment` (cleaned name,
size, sha256) to put in ``Inbound.attachments``. A file that is too big, whose declared
size lies or whose stream breaks off raises a :class:`FileRefused` (a ``BadInput``) and
nothing of it is kept; the connector then hands the event in with a note instead of
the file (``Attachment(name=..., note=...)``, no sha256), so that nothing is dropped
silently. A ``kill -9`` at any moment leaves either the whole message with its files or
nothing: files no kept message refers to are removed by the store.

A connector that receives files by their SHA-256 (a link to another roomlink instance)
asks ``await ctx.files.has(room, sha256)`` first and keeps only what is not kept yet.

Sending: ``Outbound.files`` holds the attachments the connector should post natively
(its ``Limits.files`` is True and each is within ``Limits.max_file_bytes``); their bytes
come from ``ctx.files.open(attachment)``, in chunks, from the connector's own party's
store. The text of the part already carries a ``[file: NAME (TYPE, SIZE)]`` line (and a
link where the party set ``files_url``) for each attachment the connector does not post.
A connector whose platform refuses a file (too big, upload failed for good) raises
:class:`FileRefused` from ``send``: the core sends the same part again as text with
those lines instead of the files.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from roomlink.errors import BadInput
from roomlink.message.model import Attachment

CHUNK = 64 * 1024  # bytes per chunk when the core streams a file from a store


class FileRefused(BadInput):
    """A file cannot be kept or posted: too big, a declared size that lies, a truncated
    stream, or a platform that refuses it. The message still goes, with a note."""


class Files(Protocol):
    """The core's file service for one connector (``ctx.files``)."""

    async def keep(
        self,
        room: str,
        name: str,
        mime: str | None,
        chunks: AsyncIterable[bytes],
        *,
        declared_size: int | None = None,
        max_bytes: int | None = None,
    ) -> Attachment:
        """Stream one received file into every store ``room``'s messages go to; return
        its Attachment. Raises :class:`FileRefused` (nothing kept) when it exceeds
        ``max_bytes`` (or the party's limit), ends short of or beyond ``declared_size``."""
        ...

    async def has(self, room: str, sha256: str) -> bool:
        """Whether every store ``keep`` would write a file of ``room`` to holds the file
        ``sha256`` already (a link asks its peer only for the bytes it lacks). A core
        that cannot tell answers False: the file is then kept again."""
        return False

    def open(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """The bytes of a kept file, in chunks, from this connector's party's store."""
        ...

    async def file_id(self, attachment: Attachment) -> str:
        """This party's unguessable id (128 bits or more, never the sha256) for the file,
        minted on first use: what a download URL names."""
        ...

    async def find(self, file_id: str) -> str | None:
        """The sha256 of the kept file this party's ``file_id`` names, or None (what a
        connector serving downloads, the API's ``/v1/files/...``, looks up). A core that
        keeps no ids answers None: every such download is then a 404."""
        return None
