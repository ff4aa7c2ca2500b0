"""Batching for ``batch_seconds``: the chat messages of one pipe in one room that arrive
within the window go out as one mail.

This module owns the open batches and the tasks that mail them. A batch is written to the
``batch:<room>`` connector cursor before ``send()`` returns, so the core may count the
message delivered: a batch open when roomlink stops is loaded again at start and mailed
then. The batch's Message-ID is the native id of every message in it. Building and
sending the mail itself stays with the connector, which hands in a :class:`SendMail`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from roomlink.connector import (
    ConnectorContext,
    ConnectorError,
    FileRefused,
    PermanentError,
    backoff,
)
from roomlink.message.filenames import clean_filename
from roomlink.message.markup import escape
from roomlink.message.model import Attachment, Outbound

from .options import EmailOptions


class SendMail(Protocol):
    """Build and send one mail into the room's thread (the connector's ``_mail``)."""

    async def __call__(self, pipe: str, room: str, message_id: str, from_name: str,
                       canonical: str, reply_to: str | None,
                       files: Sequence[Attachment] = ()) -> None: ...


class MailBatches:
    def __init__(self, options: EmailOptions, ctx: ConnectorContext,
                 send_mail: SendMail) -> None:
        self.opts = options
        self.ctx = ctx
        self.log = ctx.log
        self.send_mail = send_mail
        self.pending: dict[str, dict[str, dict[str, Any]]] = {}  # room -> pipe -> batch
        self.flushers: dict[tuple[str, str], asyncio.Task[None]] = {}

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks waiting out or mailing a batch, for the connector's stop()."""
        return list(self.flushers.values())

    async def load(self, rooms: Sequence[str]) -> None:
        """The batches these rooms had open when roomlink last stopped: they go out."""
        for room in rooms:
            saved = await self.ctx.get_cursor(f"batch:{room}")
            if saved:
                self.pending[room] = json.loads(saved)
                for pipe in self.pending[room]:
                    self._schedule_flush(room, pipe)

    async def add(self, out: Outbound, message_id: str, from_name: str,
                  canonical: str) -> str:
        """Put one message in its open batch (or open one with ``message_id``); returns
        the batch's Message-ID once the batch is saved."""
        room, pipe = out.room, out.message.pipe
        pending = self.pending.setdefault(room, {})
        batch = pending.get(pipe)
        item = {"name": from_name, "nick": out.message.author.name,
                "text": canonical, "reply_to": out.reply_to_native,
                "files": [a.model_dump(mode="json") for a in out.files]}
        if (batch is not None and not batch.get("closed") and out.files
                and _files_bytes(batch) + _size(out.files) > self.opts.max_attachment_bytes):
            # this message's files do not fit the open batch's mail: that one goes now
            await self._flush_now(room, pipe)
            batch = pending.get(pipe)
        if batch is None or batch.get("closed"):
            if batch is not None:  # a closed batch is being mailed: wait for it
                task = self.flushers.get((room, pipe))
                if task is not None:
                    await asyncio.gather(task, return_exceptions=True)
            batch = {"id": message_id, "due": time.time() + self.opts.batch_seconds,
                     "items": []}
            pending[pipe] = batch
            batch["items"].append(item)
            await self._save(room)
            self._schedule_flush(room, pipe)
        else:
            batch["items"].append(item)
            await self._save(room)
        return str(batch["id"])

    async def _save(self, room: str) -> None:
        await self.ctx.set_cursor(f"batch:{room}", json.dumps(self.pending.get(room, {})))

    async def _flush_now(self, room: str, pipe: str) -> None:
        """Mail the open batch of ``pipe`` in ``room`` at once, without waiting its end."""
        task = self.flushers.get((room, pipe))
        if task is not None and not task.done():
            task.cancel()  # still asleep: a batch is closed only once its wait is over
            await asyncio.gather(task, return_exceptions=True)
        self.pending[room][pipe]["due"] = time.time()
        self._schedule_flush(room, pipe)
        await asyncio.gather(self.flushers[(room, pipe)], return_exceptions=True)

    def _schedule_flush(self, room: str, pipe: str) -> None:
        self.flushers[(room, pipe)] = asyncio.create_task(self._flush(room, pipe),
                                                          name=f"{self.ctx.name} batch")

    async def _flush(self, room: str, pipe: str) -> None:
        batch = self.pending[room][pipe]
        await asyncio.sleep(max(0.0, float(batch["due"]) - time.time()))
        batch["closed"] = True
        items = batch["items"]
        names = list(dict.fromkeys(i["name"] for i in items))
        if len(names) == 1:
            canonical = "\n\n".join(i["text"] for i in items)
        else:
            canonical = "\n\n".join(f"**{escape(i['nick'])}:**\n{i['text']}" for i in items)
        reply_to = next((i["reply_to"] for i in items if i["reply_to"]), None)
        files = [Attachment.model_validate(f) for i in items for f in i.get("files", [])]
        attempt = 0
        while True:
            try:
                await self.send_mail(pipe, room, batch["id"], ", ".join(names)[:120],
                                     canonical, reply_to, files)
                break
            except FileRefused as exc:  # a file is no longer in the store: named instead
                self.log.error("%s: batch mail %s: a file cannot be attached (%s)",
                               self.ctx.name, batch["id"], exc)
                canonical += "".join(
                    "\n" + escape(f"[file: {clean_filename(a.name)} ({a.mime}, "
                                   f"{a.size} bytes)] (could not be attached)")
                    for a in files)
                files = []
            except PermanentError as exc:
                self.log.error("%s: batch mail %s to %s refused for good: %s",
                               self.ctx.name, batch["id"], room, exc)
                break
            except ConnectorError as exc:
                attempt += 1
                delay = backoff(attempt, self.opts.reconnect_initial, self.opts.reconnect_max)
                self.log.warning("%s: batch mail to %s failed (%s); retry in %.1fs",
                                 self.ctx.name, room, exc, delay)
                await asyncio.sleep(delay)
        if self.pending[room].get(pipe) is batch:
            del self.pending[room][pipe]
        await self._save(room)


def _size(files: Sequence[Attachment]) -> int:
    return sum(a.size or 0 for a in files)


def _files_bytes(batch: dict[str, Any]) -> int:
    """The bytes of files a batch's mail will carry."""
    return sum(int(f.get("size") or 0) for i in batch["items"] for f in i.get("files", []))
