"""Files out: a kept file is put on the account's HTTP upload service (XEP-0363) and
its GET URL is what the room gets.

The service is found once per connector on the account's domain (disco items, then the
one whose identity is ``store/file``), with the largest file it takes (its
``max-file-size``). A slot the service refuses as too big, a file type it does not
take, or a PUT answered 4xx raises :class:`FileRefused`: the core then sends the
message with a ``[file: ...]`` line instead. Anything that may pass on a retry (no
answer, a 5xx, a quota to wait for) is a :class:`ConnectorError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from roomlink.connector import ConnectorError, FileRefused, Files
from roomlink.message.model import Attachment

from .options import XmppOptions
from .session import Session

DISCO_TIMEOUT = 30  # seconds for the service's disco and for a slot
PUT_HEADERS = ("authorization", "cookie", "expires")  # what XEP-0363 lets a slot set
NS = "urn:xmpp:http:upload:0"


class Uploader:
    def __init__(self, session: Session, opts: XmppOptions, log: logging.Logger,
                 name: str) -> None:
        self.session = session
        self.opts = opts
        self.log = log
        self.name = name
        self.service: JID | None = JID(opts.upload_service) if opts.upload_service else None
        self.max_size: int | None = None  # what the service announces
        self.missing = False  # the domain has no upload service: files go as lines
        self._found = False

    @property
    def limit(self) -> int | None:
        """The largest file posted natively: the option, else what the service takes."""
        return self.opts.max_file_bytes or self.max_size

    async def discover(self) -> None:
        """Find the service and its size limit (once; again after a failed attempt)."""
        if self._found:
            return
        plugin = self.session.client.plugin["xep_0363"]
        try:
            if self.service is None:
                info = await plugin.find_upload_service(domain=JID(self.opts.account.domain),
                                                        timeout=DISCO_TIMEOUT)
                if info is None:
                    self.missing = True
                    self._found = True
                    self.log.warning("%s: %s has no HTTP upload service (XEP-0363): files "
                                     "are relayed as lines", self.name,
                                     self.opts.account.domain)
                    return
                self.service = JID(info["from"])
            else:
                info = await self.session.client.plugin["xep_0030"].get_info(
                    self.service, timeout=DISCO_TIMEOUT)
        except (IqError, IqTimeout) as exc:
            raise ConnectorError(f"cannot find the upload service: {exc}") from None
        self.max_size = _max_size(info)
        self._found = True
        self.log.info("%s: uploading files to %s (largest %s bytes)", self.name,
                      self.service, self.max_size or "not announced")

    async def upload(self, http: aiohttp.ClientSession, files: Files, att: Attachment) -> str:
        """Put one kept file on the service; its GET URL."""
        name = att.name or "file"
        if att.size is None or not att.sha256:
            raise FileRefused(f"{name}: not a kept file")
        await self.discover()
        if self.missing or self.service is None:
            raise FileRefused(f"{self.opts.account.domain} has no HTTP upload service")
        if self.limit is not None and att.size > self.limit:
            raise FileRefused(f"{name}: {att.size} bytes is over the upload limit of "
                              f"{self.limit}")
        mime = att.mime or "application/octet-stream"
        try:
            slot = await self.session.client.plugin["xep_0363"].request_slot(
                self.service, name, att.size, mime, timeout=DISCO_TIMEOUT)
        except IqError as exc:
            error = exc.iq["error"]
            what = f"the upload service refused {name}: {error['condition']} {error['text']}"
            if error["type"] in ("modify", "cancel", "auth"):  # too big, type, forbidden
                raise FileRefused(what.strip()) from None
            raise ConnectorError(what.strip()) from None  # wait: a quota, a busy service
        except IqTimeout:
            raise ConnectorError("the upload service did not answer") from None
        put_url, get_url = slot["http_upload_slot"]["put"]["url"], \
            slot["http_upload_slot"]["get"]["url"]
        if not _http(put_url) or not _http(get_url):
            raise FileRefused(f"the upload service gave no HTTP URL for {name}")
        headers = {h["name"]: h["value"] for h in slot["http_upload_slot"]["put"]["headers"]
                   if str(h["name"]).lower() in PUT_HEADERS}
        headers.update({"Content-Length": str(att.size), "Content-Type": mime})
        try:
            async with http.put(put_url, data=_stream(files, att), headers=headers) as resp:
                if resp.status >= 500:
                    raise ConnectorError(f"the upload of {name} answered HTTP {resp.status}")
                if resp.status >= 400:
                    raise FileRefused(f"the upload service refused {name}: HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            raise ConnectorError(f"the upload of {name} failed: {exc}") from None
        return str(get_url)


async def _stream(files: Files, att: Attachment) -> AsyncIterator[bytes]:
    async for chunk in files.open(att):
        yield chunk


def _http(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("https://", "http://"))


def _max_size(info: Any) -> int | None:
    for form in info["disco_info"].iterables:
        values = form["values"]
        if values.get("FORM_TYPE") in ([NS], NS):
            try:
                return int(values["max-file-size"])
            except (KeyError, TypeError, ValueError):
                return None
    return None
