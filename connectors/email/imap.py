"""The bridge's mailbox over IMAP (aioimaplib): log in, select, list new UIDs, fetch, wait.

aioimaplib speaks the protocol; this wraps the few commands the connector needs and turns
every way a session can fail into :class:`ImapError` or ``OSError``, so the connector has
one thing to catch before it reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import Awaitable
from datetime import date
from typing import TypeVar

import aioimaplib

from .options import EmailOptions
from .smtp import tls_context

STOP_PUSH = aioimaplib.STOP_WAIT_SERVER_PUSH
T = TypeVar("T")


class ImapError(Exception):
    """The IMAP session failed (refused, lost, or answered NO/BAD): reconnect."""


class ImapRefused(ImapError):
    """The server answered NO or BAD to one command; the connection itself is fine."""


_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _ok(resp: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if resp.result != "OK":
        text = b" ".join(bytes(x) for x in resp.lines[-1:]).decode(errors="replace")
        raise ImapRefused(f"{what}: {resp.result} {text}")
    return resp


class Mailbox:
    def __init__(self, opts: EmailOptions, log: logging.Logger) -> None:
        self.opts = opts
        self.log = log
        self.client: aioimaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self.lost = asyncio.Event()
        self.maybe_new = False  # the server announced mail since the last look

    async def connect(self) -> None:
        o = self.opts.imap
        lost = self.lost = asyncio.Event()  # this connection's own: an old one's loss
        ctx = tls_context(self.opts.tls_verify) if o.security != "none" else None

        def on_lost(exc: Exception | None) -> None:  # must not mark a newer one lost
            lost.set()

        if o.security == "tls":
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                host=o.host, port=o.effective_port, timeout=self.opts.timeout, ssl_context=ctx)
            client.protocol.conn_lost_cb = on_lost
        else:
            client = aioimaplib.IMAP4(host=o.host, port=o.effective_port,
                                      timeout=self.opts.timeout, conn_lost_cb=on_lost)
        self.client = client
        await self._guard(client.wait_hello_from_server())
        if o.security == "starttls":
            assert ctx is not None
            await self._starttls(client, ctx)
        password = o.password.get_secret_value() if o.password else ""
        _ok(await self._guard(client.login(o.username or self.opts.address, password)), "LOGIN")
        resp = _ok(await self._guard(client.select(_quote(o.folder))), f"SELECT {o.folder}")
        for line in resp.lines:
            m = _UIDVALIDITY.search(bytes(line))
            if m:
                self.uidvalidity = int(m.group(1))
        if not self.uidvalidity:
            raise ImapError("the server sent no UIDVALIDITY")

    async def _starttls(self, client: aioimaplib.IMAP4, ctx: ssl.SSLContext) -> None:
        # aioimaplib has no STARTTLS: send it, then upgrade the transport under the protocol
        proto = client.protocol
        _ok(await asyncio.wait_for(proto.execute(aioimaplib.Command(
            "STARTTLS", proto.new_tag(), loop=proto.loop)), self.opts.timeout), "STARTTLS")
        loop = asyncio.get_running_loop()
        proto.transport = await loop.start_tls(proto.transport, proto, ctx,
                                               server_hostname=self.opts.imap.host)
        await asyncio.wait_for(proto.capability(), self.opts.timeout)

    async def _guard(self, aw: Awaitable[T]) -> T:
        """Await one command, but give up as soon as the connection is gone: aioimaplib
        would wait for its timeout on a socket the server already closed."""
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not task.done():
            task.cancel()
            raise ImapError("the server closed the connection")
        return task.result()

    @property
    def can_idle(self) -> bool:
        return self.client is not None and self.client.has_capability("IDLE")

    def _c(self) -> aioimaplib.IMAP4:
        if self.client is None or self.lost.is_set():
            raise ImapError("not connected")
        return self.client

    def _note(self, resp: aioimaplib.Response) -> aioimaplib.Response:
        # an EXISTS that arrives with another command's answer is not pushed again in
        # IDLE: remember it, or a mail would wait for the next one (or the renewal)
        if any(isinstance(x, bytes) and x.endswith(b" EXISTS") for x in resp.lines):
            self.maybe_new = True
        return resp

    async def _uid(self, *args: str) -> aioimaplib.Response:
        resp = _ok(await self._guard(self._c().uid(*args)), f"UID {args[0].upper()}")
        return self._note(resp)

    async def sizes_after(self, last_uid: int) -> list[tuple[int, int]]:
        """(uid, size) of every message with a UID above ``last_uid``, in UID order."""
        self.maybe_new = False
        resp = await self._uid("fetch", f"{last_uid + 1}:*", "(UID RFC822.SIZE)")
        found = []
        for line in resp.lines:
            m = _FETCH_SIZE.search(bytes(line))
            if m:
                uid = int(m.group(1) or m.group(4))
                size = int(m.group(2) or m.group(3))
                if uid > last_uid:  # "n:*" names the last message even when its UID < n
                    found.append((uid, size))
        return sorted(found)

    async def unseen_since(self, day: date) -> list[int]:
        when = f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"
        resp = _ok(await self._guard(
            self._c().uid_search("UNSEEN", "SINCE", when, charset=None)), "UID SEARCH")
        uids: list[int] = []
        for line in resp.lines[:-1]:
            uids += [int(x) for x in bytes(line).split() if x.isdigit()]
        return sorted(uids)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole mail, without setting \\Seen; None when it is gone."""
        resp = await self._uid("fetch", str(uid), "(BODY.PEEK[])")
        for line in resp.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def mark_seen(self, uid: int) -> None:
        await self._uid("store", str(uid), "+FLAGS.SILENT", "(\\Seen)")

    async def move(self, uid: int, folder: str) -> None:
        c = self._c()
        # NO when the folder exists already: fine
        await self._guard(c.protocol.simple_command("CREATE", _quote(folder)))
        if c.has_capability("MOVE"):
            await self._uid("move", str(uid), _quote(folder))
            return
        await self._uid("copy", str(uid), _quote(folder))
        await self._uid("store", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        if c.has_capability("UIDPLUS"):
            await self._uid("expunge", str(uid))

    async def wait_for_mail(self) -> None:
        """Return when new mail may have arrived: an IDLE push, the IDLE renewal time, or
        (without IDLE) the poll interval. ImapError when the connection is lost."""
        c = self._c()
        if self.maybe_new:
            return
        if not self.can_idle:
            await self._sleep_or_lost(self.opts.poll_interval)
            _ok(await self._guard(c.noop()), "NOOP")
            return
        try:
            idle = await c.idle_start(timeout=self.opts.idle_renew)
        except aioimaplib.Abort as exc:  # IDLE announced but refused: poll from now on
            self.log.warning("IMAP: IDLE refused (%s); polling every %.0fs instead", exc,
                             self.opts.poll_interval)
            c.protocol.capabilities.discard("IDLE")
            return
        try:
            while True:
                push_task = asyncio.ensure_future(c.wait_server_push(self.opts.idle_renew + 30))
                lost_task = asyncio.ensure_future(self.lost.wait())
                done, _ = await asyncio.wait({push_task, lost_task},
                                             return_when=asyncio.FIRST_COMPLETED)
                lost_task.cancel()
                if push_task not in done:
                    push_task.cancel()
                    raise ImapError("connection lost during IDLE")
                push = push_task.result()
                if push == STOP_PUSH:  # renewal: leave IDLE, look, and go again
                    return
                if isinstance(push, list) and any(
                        b"EXISTS" in bytes(x) for x in push if isinstance(x, bytes | bytearray)):
                    return
        finally:
            if not self.lost.is_set() and c.has_pending_idle():
                c.idle_done()
                try:
                    await asyncio.wait_for(idle, self.opts.timeout)
                except (TimeoutError, aioimaplib.AioImapException) as exc:
                    raise ImapError(f"IDLE did not end: {exc}") from None

    async def _sleep_or_lost(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.lost.wait(), seconds)
        except TimeoutError:
            return
        raise ImapError("connection lost")

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if not self.lost.is_set():
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(client.logout(), 2)
        except Exception as exc:  # closing is best effort; the socket goes either way
            self.log.debug("IMAP logout: %s", exc)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()


def _quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string, in modified UTF-7 (RFC 3501 5.1.3), the
    only form a server without UTF8=ACCEPT takes for names beyond ASCII."""
    name = mutf7(name)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mutf7(name: str) -> str:
    """RFC 3501's modified UTF-7: printable ASCII as is ("&" as "&-"), every other run of
    characters as "&" + base64 of its UTF-16BE (with "," for "/", no padding) + "-"."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            encoded = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)
