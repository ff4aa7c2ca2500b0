"""The bytes of files across a link, both ways (wire.py: ``want``, chunks, ``end``).

Receiving: before a message from the peer is recorded, every file it names by SHA-256
that this side's stores do not hold yet is asked for (``want``), one at a time, and
streamed chunk by chunk through ``ctx.files.keep`` into every store of the
conversation, fsync'd, hashed as it comes: only then is the message recorded and
answered, so a ``kill -9`` of either side leaves the message with its files or nothing
(the peer, unanswered, sends it again). Bytes that do not match the announced SHA-256
or size, a file over ``max_file_bytes``, one the peer cannot send: refused with a
warning, and the message is recorded all the same, its metadata unchanged (the record
stays the same on both sides) and a note on the file saying why its bytes are missing.

Sending: the peer may ask only for a file of a message sent to it and not answered yet;
its bytes come from this party's store, a chunk at a time, each under the size the peer
asked for (its ``max_frame_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import struct
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from roomlink.connector import FileRefused, Files
from roomlink.message.model import Attachment, Message, is_digest

from .session import END, Pull, Session
from .wire import Malformed, MessageFrame, field

PULL_TIMEOUT = 60.0  # seconds without a byte of a file asked for: the transfer failed
CHUNK_MAX = 256 * 1024  # the most bytes of a file one frame carries
HEADER = struct.Struct(">I")  # a chunk frame (binary): the transfer's number, then bytes


def chunk_frame(f: int, data: bytes) -> bytes:
    return HEADER.pack(f) + data


def parse_chunk(data: bytes) -> tuple[int, bytes]:
    if len(data) < HEADER.size:
        raise Malformed("a binary frame without its transfer number")
    return HEADER.unpack_from(data)[0], data[HEADER.size:]


class FileExchange:
    """One link connector's files: what it asks the peer for and what it sends."""

    def __init__(self, name: str, files: Files | None, max_file_bytes: int,
                 max_frame_bytes: int, log: logging.Logger) -> None:
        self.name = name
        self.files = files
        self.limit = max_file_bytes
        self.chunk = min(CHUNK_MAX, max_frame_bytes - 1024)
        self.log = log

    # -- receiving ----------------------------------------------------------------------
    async def fetch_all(self, session: Session, mf: MessageFrame) -> Message:
        """The message as this side records it, once the bytes of its files are kept
        here (or refused, with a note). ConnectionError when the link went down."""
        message = mf.message
        if not message.attachments or self.files is None:
            return message
        done: list[Attachment] = []
        for a in message.attachments:
            done.append(await self._fetch(session, mf, a))
        return message.model_copy(update={"attachments": tuple(done)})

    async def _fetch(self, session: Session, mf: MessageFrame, a: Attachment) -> Attachment:
        assert self.files is not None
        if a.sha256 is None:
            return a  # metadata only on the peer's side too (its note says why)
        why = None
        if not is_digest(a.sha256):
            why = "not a SHA-256"
        elif await self.files.has(mf.room, a.sha256):
            return a.model_copy(update={"note": None})
        else:
            why = await self._pull(session, mf, a, a.sha256)
            if why is None:
                self.log.info("%s: received the file %r (%s bytes) of message %s from the "
                              "linked instance", self.name, a.name, a.size, mf.message.id)
                return a.model_copy(update={"note": None})
        self.log.warning("%s: refused the file %r (%s) of message %s from the linked "
                         "instance: %s; the message is recorded without its bytes",
                         self.name, a.name, a.sha256[:80], mf.message.id, why)
        return a.model_copy(update={"note": f"its bytes did not cross the link: {why}"[:500]})

    async def _pull(self, session: Session, mf: MessageFrame, a: Attachment,
                    sha256: str) -> str | None:
        """Ask for the file and keep it; None once kept, else why it was refused."""
        assert self.files is not None
        pulls: list[Pull] = []
        finished = broken = False

        async def chunks() -> AsyncGenerator[bytes]:
            nonlocal finished, broken
            pull = session.open_pull()
            pulls.append(pull)
            hasher = hashlib.sha256()
            try:
                await session.ws.send_str(json.dumps({"t": "want", "f": pull.f, "n": mf.n,
                                                      "sha256": sha256, "max": self.chunk}))
            except (ConnectionError, aiohttp.ClientError):
                broken = True
                raise
            while True:
                try:
                    async with asyncio.timeout(PULL_TIMEOUT):
                        item = await pull.get()
                except TimeoutError:
                    raise FileRefused(f"no bytes for {PULL_TIMEOUT:.0f} s") from None
                except ConnectionError:
                    broken = True
                    raise
                if item is END:
                    finished = True
                    break
                if isinstance(item, str):
                    finished = True
                    raise FileRefused(f"the peer could not send it ({item})")
                assert isinstance(item, bytes)
                hasher.update(item)
                yield item
            if hasher.hexdigest() != sha256:
                raise FileRefused("its bytes do not match the SHA-256 announced")

        source = chunks()
        try:
            await self.files.keep(mf.room, a.name or "file", a.mime, source,
                                  declared_size=a.size, max_bytes=self.limit)
            return None
        except FileRefused as exc:
            if broken or not session.up:
                raise ConnectionError("the link went down during a file") from None
            return str(exc)
        finally:
            await source.aclose()
            for pull in pulls:
                session.close_pull(pull)
                if not finished and session.up:  # the sender may stop sending
                    with contextlib.suppress(Exception):
                        await session.ws.send_str(json.dumps({"t": "stop", "f": pull.f}))

    async def received(self, session: Session, f: int, item: object) -> None:
        """A chunk (bytes), the end (END) or the peer's reason it cannot send (str) of
        transfer ``f``, from the reading loop."""
        try:
            pull = session.pull_for(f)
        except ValueError as exc:
            raise Malformed(str(exc)) from None
        if pull is not None:  # else one this side gave up: its last frames are dropped
            await pull.put(item)

    # -- sending ------------------------------------------------------------------------
    def want(self, session: Session, value: dict[str, Any]) -> None:
        """The peer asks for a file of a message this side sent it: send it, in chunks,
        in the background (one at a time: a newer want ends an older one)."""
        f, n = field(value, "f", int), field(value, "n", int)
        sha256, size = field(value, "sha256", str), field(value, "max", int)
        if size < 1024:
            raise Malformed("a want of chunks under 1024 bytes")
        for task in session.serving.values():
            task.cancel()
        task = asyncio.ensure_future(self._send(session, f, n, sha256, min(size, CHUNK_MAX)))
        session.serving[f] = task
        task.add_done_callback(lambda _: session.serving.pop(f, None))

    def stop(self, session: Session, value: dict[str, Any]) -> None:
        task = session.serving.get(field(value, "f", int))
        if task is not None:
            task.cancel()

    async def _send(self, session: Session, f: int, n: int, sha256: str, size: int) -> None:
        a = session.wanted(n, sha256)
        try:
            if a is None or self.files is None:
                await self._lack(session, f, "not a file of a message waiting for its answer")
                return
            buffer = bytearray()
            try:
                async for chunk in self.files.open(a):
                    buffer += chunk
                    while len(buffer) >= size:
                        await session.ws.send_bytes(chunk_frame(f, bytes(buffer[:size])))
                        del buffer[:size]
                        session.touch(n)
            except (ConnectionError, aiohttp.ClientError):
                raise
            except Exception as exc:  # the store lost it, or cannot read it now
                self.log.error("%s: cannot send the file %s of message %s to the peer: %s",
                               self.name, sha256, a and n, exc)
                await self._lack(session, f, "its bytes are not kept on this side")
                return
            if buffer:
                await session.ws.send_bytes(chunk_frame(f, bytes(buffer)))
            await session.ws.send_str(json.dumps({"t": "end", "f": f}))
        except (ConnectionError, aiohttp.ClientError):
            return  # the link went down: the peer asks again on the next connection

    @staticmethod
    async def _lack(session: Session, f: int, reason: str) -> None:
        await session.ws.send_str(json.dumps({"t": "lack", "f": f, "reason": reason}))
