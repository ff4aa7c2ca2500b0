"""Files on Slack, both ways.

In: each file of a message event is downloaded from its ``url_private_download`` with
the bot token (``files:read``) and streamed into ``ctx.files.keep`` before the event is
handed in. The token goes only to the Web API's own host or its subdomains
(``files.slack.com`` for ``slack.com``): a file anywhere else, or one that cannot be
downloaded or kept (too big, gone, cut short), goes in as a note beside the text,
never dropped and never holding up the room.

Out: Slack's external upload (``files.upload`` was switched off on 2025-11-12): for each
file ``files.getUploadURLExternal`` (filename, length), a POST of the bytes to the
``upload_url`` it answers (streamed from the party's store; that URL is pre-signed, so
no token goes with it), then one ``files.completeUploadExternal`` with ``channel_id``,
the text as ``initial_comment`` and ``thread_ts`` for a reply. Its answer names the
files only, not the message: the message's ``ts`` is read from the file's ``shares``
(``files.info``), where Slack records it once the share is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from roomlink.connector import ConnectorError, Files, RateLimited, backoff
from roomlink.connector.files import FileRefused
from roomlink.message.filenames import clean_filename
from roomlink.message.model import Attachment

DOWNLOAD_CHUNK = 64 * 1024
UPLOAD_ATTEMPTS = 3  # POSTs to a fresh upload URL before the file is refused for good
SHARE_WAITS = (0.1, 0.2, 0.4, 0.8, 1.5, 2.0)  # files.info polls for the message ts
# getUploadURLExternal / completeUploadExternal errors that refuse this file for good
# (the message then goes as text with a [file: ...] line instead)
REFUSALS = {
    "file_upload_size_restricted", "file_uploads_disabled",
    "file_uploads_except_images_disabled", "storage_limit_reached", "snippet_too_large",
    "file_too_large", "file_type_not_allowed", "missing_argument",
}

# the connector's Web API call with its error mapping: call(method, sdk_function, **args)
Call = Callable[..., Awaitable[AsyncSlackResponse]]


class UploadFailed(Exception):
    """The upload service answered something other than 200."""


def trusted_host(url: str, api_url: str) -> bool:
    """Whether the bot token may go to ``url``: the Web API's host or a subdomain of it
    (``files.slack.com`` for ``https://slack.com/api/``), over the same scheme."""
    try:
        target, api = urlsplit(url), urlsplit(api_url)
    except ValueError:
        return False
    host, base = (target.hostname or "").lower(), (api.hostname or "").lower()
    base = base.removeprefix("www.")
    return (bool(host) and target.scheme == api.scheme
            and (host == base or host.endswith("." + base)))


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value or 1))
    except ValueError:
        return 1.0


def _size_text(size: int | None) -> str:
    return f"{size} bytes" if size is not None else "unknown size"


class SlackFiles:
    """Downloads received files into the stores and uploads kept files to Slack."""

    def __init__(self, http: aiohttp.ClientSession, files: Files, token: str, api_url: str,
                 max_bytes: int, timeout: float, log: logging.Logger, name: str) -> None:
        self.http = http
        self.files = files
        self.token = token
        self.api_url = api_url
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.log = log
        self.name = name

    # -- in ------------------------------------------------------------------------------
    async def receive(self, room: str, found: Sequence[Any],
                      info: Callable[[str], Awaitable[Mapping[str, Any] | None]]
                      ) -> list[Attachment]:
        """The attachments of one message's ``files``, each kept or with a note."""
        kept = []
        for f in found:
            if not isinstance(f, Mapping):
                continue
            if not f.get("url_private_download") and isinstance(f.get("id"), str):
                # a Slack Connect share may carry only the id ("check_file_info")
                f = await info(str(f["id"])) or f
            kept.append(await self._keep_one(room, f))
        return kept

    async def _keep_one(self, room: str, f: Mapping[str, Any]) -> Attachment:
        name = str(f.get("name") or f.get("title") or f.get("id") or "file")
        mime = f.get("mimetype") if isinstance(f.get("mimetype"), str) else None
        size = f.get("size") if isinstance(f.get("size"), int) else None
        url = f.get("url_private_download") or f.get("url_private")
        link = f.get("permalink") if isinstance(f.get("permalink"), str) else None
        if not isinstance(url, str) or not url:
            reason = "Slack gave no download URL"
        elif not trusted_host(url, self.api_url):
            reason = "not downloaded: the file is not on Slack's own host"
        else:
            try:
                return await self._download(room, name, mime, size, url)
            except FileRefused as exc:
                reason = f"not kept: {exc}"
            except (aiohttp.ClientError, TimeoutError, OSError, DownloadFailed) as exc:
                reason = f"download failed: {exc or type(exc).__name__}"
        self.log.warning("%s: file %r (%s) of a message in %s: %s", self.name, name,
                         _size_text(size), room, reason)
        return Attachment(url=link, name=clean_filename(name), mime=mime, size=size,
                          note=reason)

    async def _download(self, room: str, name: str, mime: str | None, size: int | None,
                        url: str) -> Attachment:
        """Stream the file at ``url`` into every store; the kept Attachment."""
        if size is not None and size > self.max_bytes:  # not worth a download
            raise FileRefused(f"{size} bytes is over the limit of {self.max_bytes}")
        # no redirects: Slack sends a request it does not accept to its sign-in page
        async with self.http.get(url, headers={"Authorization": f"Bearer {self.token}"},
                                 allow_redirects=False,
                                 timeout=aiohttp.ClientTimeout(sock_read=self.timeout,
                                                               sock_connect=self.timeout)
                                 ) as response:
            if response.status != 200:
                raise DownloadFailed(f"HTTP {response.status}")
            return await self.files.keep(
                room, name, mime, response.content.iter_chunked(DOWNLOAD_CHUNK),
                declared_size=size, max_bytes=self.max_bytes)

    # -- out -----------------------------------------------------------------------------
    async def upload(self, call: Call, web: Any, cid: str,
                     files: Sequence[Attachment], comment: str, thread_ts: str | None
                     ) -> tuple[list[str], str | None]:
        """Share ``files`` in channel ``cid`` with ``comment``; return the Slack file ids
        and the ts of the message that shows them (None if Slack did not say in time)."""
        ids = []
        for att in files:
            ids.append(await self._upload_one(call, web, att))
        args: dict[str, Any] = {"files": [{"id": fid, "title": att.name or fid}
                                          for fid, att in zip(ids, files, strict=True)],
                                "channel_id": cid, "initial_comment": comment}
        if thread_ts:
            args["thread_ts"] = thread_ts
        await call("files.completeUploadExternal", web.files_completeUploadExternal, **args)
        return ids, await self._share_ts(web, ids[0], cid)

    async def _upload_one(self, call: Call, web: Any,
                          att: Attachment) -> str:
        if att.size is None or att.sha256 is None:
            raise FileRefused(f"{att.name}: not kept, nothing to upload")
        name = att.name or "file"
        attempt = 0
        while True:
            answer = await call("files.getUploadURLExternal", web.files_getUploadURLExternal,
                                filename=name, length=att.size)
            try:
                await self._post_bytes(str(answer["upload_url"]), att)
                return str(answer["file_id"])
            except UploadFailed as exc:
                attempt += 1
                if attempt >= UPLOAD_ATTEMPTS:
                    raise FileRefused(f"{name}: the upload was refused ({exc}) "
                                      f"{attempt} times") from None
                self.log.info("%s: upload of %r failed (%s); trying again", self.name, name,
                              exc)
                await asyncio.sleep(backoff(attempt, 0.5, 5.0))

    async def _post_bytes(self, url: str, att: Attachment) -> None:
        try:
            async with self.http.post(
                    url, data=self.files.open(att),
                    headers={"Content-Length": str(att.size),
                             "Content-Type": "application/octet-stream"},
                    timeout=aiohttp.ClientTimeout(sock_read=self.timeout,
                                                  sock_connect=self.timeout)) as response:
                body = (await response.content.read(200)).decode("utf-8", "replace")
                if response.status == 429:  # the core waits and sends the message again
                    raise RateLimited(f"upload of {att.name}: HTTP 429",
                                      retry_after=_seconds(response.headers.get("Retry-After")))
                if response.status != 200:
                    raise UploadFailed(f"HTTP {response.status}: {body.strip()[:100]}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ConnectorError(f"upload of {att.name}: {type(exc).__name__}: {exc}"
                                 ) from None

    async def _share_ts(self, web: Any, fid: str, cid: str) -> str | None:
        """The ts of the message sharing file ``fid`` in ``cid``, from ``files.info``:
        Slack fills in the file's ``shares`` once the (asynchronous) share is done."""
        for wait in SHARE_WAITS:
            await asyncio.sleep(wait)
            try:
                answer = await web.files_info(file=fid)
            except Exception as exc:  # the file is shared already: never fail the send now
                self.log.info("%s: files.info %s failed (%s)", self.name, fid, exc)
                continue
            ts = share_ts(answer.get("file") or {}, cid)
            if ts is not None:
                return ts
        self.log.warning("%s: Slack did not say which message shares file %s in %s; "
                         "later edits and deletes of it are not relayed", self.name, fid, cid)
        return None


class DownloadFailed(Exception):
    """The file host answered something other than the file."""


def share_ts(file: Mapping[str, Any], cid: str) -> str | None:
    """The newest message ts sharing ``file`` in channel ``cid`` (its ``shares``)."""
    shares = file.get("shares")
    if not isinstance(shares, Mapping):
        return None
    found = []
    for kind in ("public", "private"):
        per_channel = shares.get(kind)
        if isinstance(per_channel, Mapping):
            for share in per_channel.get(cid) or []:
                if isinstance(share, Mapping) and isinstance(share.get("ts"), str):
                    found.append(share["ts"])
    return max(found, key=float) if found else None

