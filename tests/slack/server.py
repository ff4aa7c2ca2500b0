"""A local Slack: the Web API methods roomlink uses, and Socket Mode, on 127.0.0.1.

Built from Slack's public documentation (docs.slack.dev / api.slack.com):

- Web API: ``POST|GET {base}/{method}``, token in ``Authorization: Bearer``; arguments as
  query string, form or JSON. Answers are JSON with ``ok``; failures are HTTP 200 with
  ``{"ok": false, "error": "<code>"}`` (``not_authed``, ``invalid_auth``,
  ``not_allowed_token_type``, ``channel_not_found``, ``not_in_channel``, ``msg_too_long``,
  ``no_text``, ``message_not_found``, ``cant_update_message``, ``cant_delete_message``,
  ``user_not_found``), except rate limits: HTTP 429 with ``Retry-After`` seconds and
  ``{"ok": false, "error": "ratelimited"}``. ``conversations.list`` pages with ``cursor``
  and ``response_metadata.next_cursor`` (and may return fewer than ``limit`` items).
- Socket Mode: ``apps.connections.open`` (app-level ``xapp-`` token) returns a one-use
  ``wss`` URL; the server greets with ``hello``, sends ``events_api`` envelopes (an
  ``envelope_id``, the Events API ``event_callback`` payload, ``retry_attempt``,
  ``retry_reason``) which the app acknowledges with ``{"envelope_id": ...}``. Unacknowledged
  envelopes are sent again on the next connection with ``retry_attempt`` raised. A
  ``disconnect`` envelope (``reason``: ``warning``, ``refresh_requested``) precedes a
  routine close.
- Message events: plain messages, ``bot_message`` for posts with a ``username`` override,
  ``me_message``, ``file_share``, thread replies (``thread_ts``), ``message_changed``
  (``message`` and ``previous_message``) and ``message_deleted`` (``deleted_ts``).
- Files: a message that shares files has ``subtype: file_share``, ``upload: true`` and a
  ``files`` array of file objects (``id``, ``name``, ``title``, ``mimetype``,
  ``filetype``, ``size``, ``url_private``, ``url_private_download``
  (``{files host}/files-pri/{team}-{id}/download/{name}``), ``permalink``, ...). The
  bytes come from ``url_private(_download)`` only with ``Authorization: Bearer`` and a
  token that may read them; anything else is redirected to the sign-in page (an HTML
  page, not the file). Uploads (``files.upload`` is gone) are external:
  ``files.getUploadURLExternal`` (``filename``, ``length``; errors ``missing_argument``
  for a zero length, ``file_upload_size_restricted`` over the workspace's limit) answers
  ``upload_url`` and ``file_id``; a POST of the bytes (raw or multipart) to that URL is
  answered ``200`` ``OK - <length>`` (anything else is a failure);
  ``files.completeUploadExternal`` (``files`` as a JSON array of ``{id, title}``,
  ``channel_id``, ``initial_comment``, ``thread_ts``; errors ``invalid_arguments``,
  ``file_not_found``, ``invalid_channel``, ``not_in_channel``) answers
  ``{"ok": true, "files": [{"id", "title"}]}`` only: the share itself happens a moment
  later, when the message appears in the channel (and its event goes out) and the file's
  ``shares.public|private[channel]`` lists the message ``ts`` (``files.info``).

Tests talk to it as Slack users do (:meth:`say`, :meth:`edit`, :meth:`delete`) and read
what the bridge posted (:meth:`history`). Faults are injected with :meth:`fail` and
:meth:`drop_sockets` / :meth:`send_disconnect`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import mimetypes
import re
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from rlkit import free_port

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-1-test-app-token"
TEAM, APP_ID = "T0ROOMLNK", "A0ROOMLNK"
BOT_USER, BOT_ID = "U0BRIDGE", "B0BRIDGE"
MAX_TEXT = 40_000  # chat.postMessage: longer texts are msg_too_long
SLACK_MAX_FILE = 1024 ** 3  # Slack takes files of up to 1 GB
# extensions Slack recognises (a part of its documented file types: "filetype" values);
# a file of any other kind is "binary", application/octet-stream
FILETYPES = {
    "png": "png", "jpg": "jpg", "jpeg": "jpg", "gif": "gif", "bmp": "bmp", "svg": "svg",
    "tif": "tiff", "tiff": "tiff", "pdf": "pdf", "txt": "text", "csv": "csv", "tsv": "tsv",
    "json": "json", "xml": "xml", "yaml": "yaml", "yml": "yaml", "html": "html",
    "md": "markdown", "doc": "doc", "docx": "docx", "xls": "xls", "xlsx": "xlsx",
    "ppt": "ppt", "pptx": "pptx", "odt": "odt", "ods": "ods", "odp": "odp", "rtf": "rtf",
    "zip": "zip", "gz": "gzip", "tar": "tar", "mp3": "mp3", "m4a": "m4a", "wav": "wav",
    "ogg": "ogg", "mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "mkv", "eps": "eps",
}
# the sequences that notify people: <!here> <!channel> <!everyone> <@U..> <!subteam^..>
PING = re.compile(r"<(?:!(?:here|channel|everyone|subteam\^)[^>]*|@[UW][A-Z0-9]+[^>]*)>")


@dataclass
class Fault:
    status: int
    error: str
    retry_after: int | None = None


@dataclass
class Upload:
    """A file between files.getUploadURLExternal and files.completeUploadExternal."""

    file_id: str
    filename: str
    length: int
    data: bytes | None = None  # once POSTed to the upload URL


@dataclass
class Download:
    """How the file host answers for one file (tests set it)."""

    status: int = 200
    first: int | None = None  # send this many bytes, then wait for ``gate``
    gate: asyncio.Event | None = None
    truncate: bool = False  # then break the connection off short of the length


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool = False
    members: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def info(self, viewer: str) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "name_normalized": self.name,
            "is_channel": not self.is_private, "is_group": False, "is_im": False,
            "is_mpim": False, "is_private": self.is_private, "is_archived": False,
            "is_general": self.name == "general", "is_shared": False, "is_ext_shared": False,
            "is_org_shared": False, "is_member": viewer in self.members,
            "created": 1700000000, "creator": "U0ADMIN", "num_members": len(self.members),
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


class SlackServer:
    def __init__(self, page_size: int = 2) -> None:
        self.port = free_port()
        self.page_size = page_size  # conversations.list returns at most this many per page
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[float] = []  # time.monotonic() of each call in ``calls``
        self.faults: dict[str, list[Fault]] = {}
        self.sockets: list[web.WebSocketResponse] = []
        self.connections = 0  # Socket Mode connections opened
        self.acked: list[str] = []  # envelope ids, in ack order
        self.sent: list[dict[str, Any]] = []  # every envelope sent, retries included
        self._unacked: dict[str, dict[str, Any]] = {}  # envelope id -> envelope
        self._queue: list[dict[str, Any]] = []  # envelopes waiting for a connection
        self._tickets: set[str] = set()
        self.lose_acks = False  # acks are read but lost, as if the connection broke first
        self.lost_acks: list[str] = []
        self._ts = 0
        self._changed = asyncio.Event()
        self.files: dict[str, dict[str, Any]] = {}  # file id -> file object
        self.blobs: dict[str, bytes] = {}  # file id -> bytes
        self.uploads: dict[str, Upload] = {}  # upload ticket -> pending upload
        self.downloads: dict[str, Download] = {}  # file id -> how its download goes
        self.downloaded: list[tuple[str, str]] = []  # (file id, token) of each download
        self.max_upload = SLACK_MAX_FILE  # the workspace's file size limit
        self.share_delay = 0.3  # seconds between completeUploadExternal and the share
        self.upload_failures: list[int] = []  # statuses the next upload POSTs answer
        self._runner: web.AppRunner | None = None
        self.add_user(BOT_USER, "roomlink", is_bot=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # -- directory -------------------------------------------------------------------
    def add_user(self, uid: str, name: str, display_name: str = "", real_name: str = "",
                 is_bot: bool = False) -> dict[str, Any]:
        user = {
            "id": uid, "team_id": TEAM, "name": name, "deleted": False,
            "real_name": real_name or name, "is_bot": is_bot, "is_admin": False,
            "tz": "Europe/London", "updated": 1700000000,
            "profile": {"display_name": display_name, "real_name": real_name or name,
                        "display_name_normalized": display_name,
                        "real_name_normalized": real_name or name,
                        "image_72": f"https://avatars.example/{uid}_72.png",
                        "image_192": f"https://avatars.example/{uid}_192.png",
                        "team": TEAM},
        }
        self.users[uid] = user
        return user

    def rename_user(self, uid: str, display_name: str) -> None:
        """A user changes their display name: ``user_change`` goes out."""
        self.users[uid]["profile"]["display_name"] = display_name
        self._emit({"type": "user_change", "user": self.users[uid],
                    "cache_ts": int(time.time()), "event_ts": self._next_ts()})

    def add_channel(self, cid: str, name: str, is_private: bool = False,
                    bot_member: bool = True) -> Channel:
        channel = Channel(cid, name, is_private)
        if bot_member:
            channel.members.add(BOT_USER)
        self.channels[cid] = channel
        return channel

    # -- what users do -----------------------------------------------------------------
    def say(self, cid: str, uid: str, text: str, thread_ts: str | None = None,
            subtype: str | None = None, files: list[dict[str, Any]] | None = None,
            **extra: Any) -> str:
        channel = self.channels[cid]
        channel.members.add(uid)
        message: dict[str, Any] = {"type": "message", "user": uid, "text": text,
                                   "ts": self._next_ts(), "team": TEAM, **extra}
        if subtype:
            message["subtype"] = subtype
        if files:
            message["files"] = files
            message.setdefault("subtype", "file_share")
        self._post(channel, message, thread_ts)
        return str(message["ts"])

    def edit(self, cid: str, ts: str, text: str) -> None:
        channel = self.channels[cid]
        message = self._find(channel, ts)
        assert message is not None, ts
        before = dict(message)
        message.setdefault("_edits", []).append(message["text"])
        message["text"] = text
        message["edited"] = {"user": message.get("user", BOT_USER), "ts": self._next_ts()}
        self._emit({"type": "message", "subtype": "message_changed", "hidden": True,
                    "channel": cid, "ts": message["edited"]["ts"],
                    "event_ts": message["edited"]["ts"], "message": _public(message),
                    "previous_message": _public(before), "channel_type": _type(channel)})

    def delete(self, cid: str, ts: str) -> None:
        channel = self.channels[cid]
        message = self._find(channel, ts)
        assert message is not None, ts
        message["_deleted"] = True
        now = self._next_ts()
        self._emit({"type": "message", "subtype": "message_deleted", "hidden": True,
                    "channel": cid, "ts": now, "event_ts": now, "deleted_ts": ts,
                    "previous_message": _public(message), "channel_type": _type(channel)})

    # -- what tests read ---------------------------------------------------------------
    def history(self, cid: str, bot_only: bool = True) -> list[dict[str, Any]]:
        """Messages in the channel (bot posts and the bot's file shares only by default),
        oldest first; a deleted one keeps ``_deleted``, an edited one its earlier texts in
        ``_edits``."""
        return [m for m in self.channels[cid].messages
                if not bot_only or m.get("bot_id") == BOT_ID or m.get("user") == BOT_USER]

    # -- files ---------------------------------------------------------------------------
    def add_file(self, uid: str, name: str, data: bytes, mimetype: str = "",
                 title: str | None = None) -> dict[str, Any]:
        """A file ``uid`` uploaded (not shared yet): its file object, as Slack has it."""
        fid = "F" + uuid.uuid4().hex[:10].upper()
        ext = FILETYPES.get(name.rsplit(".", 1)[-1].lower() if "." in name else "", "binary")
        if not mimetype:  # Slack decides the type of an uploaded file from its name
            known = mimetypes.guess_type(name)[0] if ext != "binary" else None
            mimetype = known or "application/octet-stream"
        base = f"http://127.0.0.1:{self.port}"
        quoted = urllib.parse.quote(name, safe="")
        now = int(time.time())
        file = {
            "id": fid, "created": now, "timestamp": now, "name": name,
            "title": title if title is not None else name, "mimetype": mimetype,
            "filetype": ext, "pretty_type": ext.upper(), "user": uid, "user_team": TEAM,
            "editable": False, "size": len(data), "mode": "hosted", "is_external": False,
            "external_type": "", "is_public": True, "public_url_shared": False,
            "display_as_bot": False, "username": "",
            "url_private": f"{base}/files-pri/{TEAM}-{fid}/{quoted}",
            "url_private_download": f"{base}/files-pri/{TEAM}-{fid}/download/{quoted}",
            "permalink": f"https://roomlink-test.slack.com/files/{uid}/{fid}/{quoted}",
            "permalink_public": f"https://slack-files.com/{TEAM}-{fid}-{uuid.uuid4().hex[:10]}",
            "comments_count": 0, "is_starred": False, "shares": {}, "channels": [],
            "groups": [], "ims": [], "has_rich_preview": False, "file_access": "visible",
        }
        self.files[fid] = file
        self.blobs[fid] = data
        return file

    def upload(self, cid: str, uid: str, files: list[tuple[str, bytes, str]], text: str = "",
               thread_ts: str | None = None) -> str:
        """``uid`` shares files ``(name, bytes, mimetype)`` in ``cid`` with ``text``, as
        the Slack client does; the ``file_share`` message's ts."""
        objects = [self.add_file(uid, name, data, mime) for name, data, mime in files]
        message: dict[str, Any] = {"type": "message", "subtype": "file_share", "user": uid,
                                   "text": text, "ts": self._next_ts(), "upload": True,
                                   "display_as_bot": False, "files": objects}
        self._share(self.channels[cid], message, objects, thread_ts)
        return str(message["ts"])

    def file_bytes(self, message: dict[str, Any]) -> list[tuple[str, str, bytes]]:
        """(name, mimetype, bytes) of each file a message shares."""
        return [(f["name"], f["mimetype"], self.blobs[f["id"]]) for f in message.get("files", [])]

    def _share(self, channel: Channel, message: dict[str, Any], objects: list[dict[str, Any]],
               thread_ts: str | None) -> None:
        channel.members.add(message["user"])
        self._post(channel, message, thread_ts)
        kind = "private" if channel.is_private else "public"
        for file in objects:
            share = {"reply_users": [], "reply_users_count": 0, "reply_count": 0,
                     "ts": message["ts"], "channel_name": channel.name, "team_id": TEAM,
                     "share_user_id": message["user"], "source": "UNKNOWN"}
            if message.get("thread_ts"):
                share["thread_ts"] = message["thread_ts"]
            file["shares"].setdefault(kind, {}).setdefault(channel.id, []).append(share)
            file["channels" if kind == "public" else "groups"].append(channel.id)

    def method_calls(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == method]

    def fail(self, method: str, error: str, status: int = 200,
             retry_after: int | None = None, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` fail like Slack fails them."""
        self.faults.setdefault(method, []).extend(
            Fault(status, error, retry_after) for _ in range(times))

    def handed_over(self, ts: str) -> bool:
        """Whether an envelope carrying the message ``ts`` was sent to the app."""
        return any(e["payload"]["event"].get("ts") == ts for e in self.sent)

    def is_acked(self, ts: str) -> bool:
        return any(e["envelope_id"] in self.acked for e in self.sent
                   if e["payload"]["event"].get("ts") == ts)

    async def wait(self, check: Any, timeout: float = 20, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"slack server: timed out waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def wait_posts(self, cid: str, count: int, timeout: float = 30
                         ) -> list[dict[str, Any]]:
        await self.wait(lambda: len(self.history(cid)) >= count, timeout,
                        f"{count} bot posts in {cid} (have {len(self.history(cid))})")
        return self.history(cid)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's routine goodbye: a ``disconnect`` envelope, then the socket closes."""
        for ws in list(self.sockets):
            await ws.send_str(json.dumps({"type": "disconnect", "reason": reason,
                                          "debug_info": {"host": "applink-test"}}))
        await asyncio.sleep(0.5)
        await self.drop_sockets()

    async def drop_sockets(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        self.sockets.clear()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        app.router.add_post("/upload/v1/{ticket}", self._upload_bytes)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._file_bytes)
        app.router.add_get("/files-pri/{team_file}/{name}", self._file_bytes)
        app.router.add_get("/", self._sign_in)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.drop_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- internals -----------------------------------------------------------------------
    def _next_ts(self) -> str:
        self._ts += 1
        return f"{int(time.time())}.{self._ts:06d}"

    def _find(self, channel: Channel, ts: str) -> dict[str, Any] | None:
        return next((m for m in channel.messages if m["ts"] == ts), None)

    def _post(self, channel: Channel, message: dict[str, Any], thread_ts: str | None) -> None:
        if thread_ts:
            parent = self._find(channel, thread_ts)
            # a reply to a reply lands in the parent's thread
            root = parent.get("thread_ts", thread_ts) if parent else thread_ts
            message["thread_ts"] = root
            if parent is not None:
                root_msg = self._find(channel, root) or parent
                root_msg.setdefault("thread_ts", root)
                root_msg["reply_count"] = root_msg.get("reply_count", 0) + 1
                message["parent_user_id"] = root_msg.get("user", BOT_USER)
        channel.messages.append(message)
        self._emit({**_public(message), "channel": channel.id, "event_ts": message["ts"],
                    "channel_type": _type(channel)})
        self._changed.set()

    def emit(self, event: dict[str, Any]) -> None:
        """Send any event, malformed ones included, in an ``events_api`` envelope."""
        self._emit(event)

    def _emit(self, event: dict[str, Any]) -> None:
        envelope = {
            "envelope_id": str(uuid.uuid4()),
            "payload": {
                "token": "verification-token-unused", "team_id": TEAM, "api_app_id": APP_ID,
                "event": event, "type": "event_callback",
                "event_id": "Ev" + uuid.uuid4().hex[:10].upper(),
                "event_time": int(time.time()), "event_context": uuid.uuid4().hex,
                "authorizations": [{"enterprise_id": None, "team_id": TEAM,
                                    "user_id": BOT_USER, "is_bot": True,
                                    "is_enterprise_install": False}],
                "is_ext_shared_channel": False,
            },
            "type": "events_api", "accepts_response_payload": False,
            "retry_attempt": 0, "retry_reason": "",
        }
        self._unacked[envelope["envelope_id"]] = envelope
        if self.sockets:
            asyncio.get_running_loop().create_task(self._send(self.sockets[-1], envelope))
        else:
            self._queue.append(envelope)

    async def _send(self, ws: web.WebSocketResponse, envelope: dict[str, Any]) -> None:
        try:
            await ws.send_str(json.dumps(envelope))
            self.sent.append(envelope)
            self._changed.set()
        except (ConnectionError, RuntimeError):
            self._queue.append(envelope)  # the next connection gets it

    async def resend(self, ts: str) -> None:
        """Deliver the event of message ``ts`` again, as Slack retries one (same event_id)."""
        old = next(e for e in reversed(self.sent) if e["payload"]["event"].get("ts") == ts)
        envelope = {**old, "envelope_id": str(uuid.uuid4()),
                    "retry_attempt": old["retry_attempt"] + 1, "retry_reason": "timeout"}
        self._unacked[envelope["envelope_id"]] = envelope
        await self._send(self.sockets[-1], envelope)

    def redeliver(self) -> None:
        """Send every unacknowledged envelope again (as Slack does on a new connection)."""
        self._queue = []
        for old in list(self._unacked.values()):
            del self._unacked[old["envelope_id"]]
            envelope = {**old, "envelope_id": str(uuid.uuid4()),
                        "retry_attempt": old["retry_attempt"] + 1, "retry_reason": "timeout"}
            self._unacked[envelope["envelope_id"]] = envelope
            self._queue.append(envelope)

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": len(self.sockets) + 1,
            "debug_info": {"host": "applink-test", "build_number": 1,
                           "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID}}))
        self.sockets.append(ws)
        self.redeliver()
        waiting, self._queue = self._queue, []
        for envelope in waiting:
            await self._send(ws, envelope)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    envelope_id = json.loads(msg.data)["envelope_id"]
                    if self.lose_acks:
                        self.lost_acks.append(envelope_id)
                        self._changed.set()
                        continue
                    if self._unacked.pop(envelope_id, None) is not None:
                        self.acked.append(envelope_id)
                        self._changed.set()
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
        return ws

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                args.update(await request.json())
        elif request.can_read_body:
            args.update(await request.post())
        self.calls.append((method, args))
        self.call_times.append(time.monotonic())
        faults = self.faults.get(method)
        if faults:
            fault = faults.pop(0)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            return web.json_response({"ok": False, "error": fault.error},
                                     status=fault.status, headers=headers)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        token = token or str(args.get("token", ""))
        if not token:
            return _error("not_authed")
        if method == "apps.connections.open":
            if token.startswith("xoxb-"):
                return _error("not_allowed_token_type")
            if token != APP_TOKEN:
                return _error("invalid_auth")
            ticket = uuid.uuid4().hex
            self._tickets.add(ticket)
            return _ok(url=f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}")
        if token != BOT_TOKEN:
            return _error("invalid_auth" if not token.startswith("xapp-")
                          else "not_allowed_token_type")
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        result: web.Response = handler(args)
        return result

    def _m_auth_test(self, args: dict[str, Any]) -> web.Response:
        return _ok(url="https://roomlink-test.slack.com/", team="Roomlink Test",
                   user="roomlink", team_id=TEAM, user_id=BOT_USER, bot_id=BOT_ID,
                   is_enterprise_install=False)

    def _m_conversations_list(self, args: dict[str, Any]) -> web.Response:
        types = str(args.get("types") or "public_channel").split(",")
        found = [c for c in self.channels.values()
                 if ("private_channel" if c.is_private else "public_channel") in types]
        start = int(base64.b64decode(args["cursor"]).decode()) if args.get("cursor") else 0
        limit = min(int(args.get("limit") or 100), 1000, self.page_size)
        page = found[start:start + limit]
        more = start + limit < len(found)
        cursor = base64.b64encode(str(start + limit).encode()).decode() if more else ""
        return _ok(channels=[c.info(BOT_USER) for c in page
                             if not c.is_private or BOT_USER in c.members],
                   response_metadata={"next_cursor": cursor})

    def _m_conversations_info(self, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel")))
        if channel is None or (channel.is_private and BOT_USER not in channel.members):
            return _error("channel_not_found")
        return _ok(channel=channel.info(BOT_USER))

    def _m_users_info(self, args: dict[str, Any]) -> web.Response:
        user = self.users.get(str(args.get("user")))
        return _ok(user=user) if user else _error("user_not_found")

    def _channel_for_bot(self, args: dict[str, Any]) -> Channel | web.Response:
        channel = self.channels.get(str(args.get("channel")))
        if channel is None:
            return _error("channel_not_found")
        if BOT_USER not in channel.members:
            return _error("not_in_channel")
        return channel

    def _m_chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        channel = self._channel_for_bot(args)
        if isinstance(channel, web.Response):
            return channel
        text = str(args.get("text") or "")
        if not text.strip() and not args.get("blocks") and not args.get("attachments"):
            return _error("no_text")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        message: dict[str, Any] = {"type": "message", "text": text, "ts": self._next_ts(),
                                   "bot_id": BOT_ID, "app_id": APP_ID, "user": BOT_USER,
                                   "team": TEAM}
        if args.get("username"):
            message["subtype"] = "bot_message"
            message["username"] = str(args["username"])
        if args.get("icon_url"):
            message["icons"] = {"image_48": str(args["icon_url"])}
        message["_link_names"] = str(args.get("link_names", "")).lower() in ("1", "true")
        self._post(channel, message, str(args["thread_ts"]) if args.get("thread_ts") else None)
        return _ok(channel=channel.id, ts=message["ts"], message=_public(message))

    def _bot_message(self, args: dict[str, Any]) -> tuple[Channel, dict[str, Any]] | web.Response:
        channel = self._channel_for_bot(args)
        if isinstance(channel, web.Response):
            return channel
        message = self._find(channel, str(args.get("ts")))
        if message is None or message.get("_deleted"):
            return _error("message_not_found")
        if message.get("bot_id") != BOT_ID and message.get("user") != BOT_USER:
            return _error("cant_update_message")
        return channel, message

    def _m_chat_update(self, args: dict[str, Any]) -> web.Response:
        found = self._bot_message(args)
        if isinstance(found, web.Response):
            return found
        channel, message = found
        text = str(args.get("text") or "")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        self.edit(channel.id, message["ts"], text)
        return _ok(channel=channel.id, ts=message["ts"], text=text, message=_public(message))

    def _m_chat_delete(self, args: dict[str, Any]) -> web.Response:
        found = self._bot_message(args)
        if isinstance(found, web.Response):
            if found.text and "cant_update_message" in found.text:
                return _error("cant_delete_message")
            return found
        channel, message = found
        self.delete(channel.id, message["ts"])
        return _ok(channel=channel.id, ts=message["ts"])

    # -- files ---------------------------------------------------------------------------
    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> web.Response:
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length") or 0)
        except ValueError:
            return _error("invalid_arguments")
        if not filename or length <= 0:
            return _error("missing_argument")
        if length > self.max_upload:
            return _error("file_upload_size_restricted")
        ticket = uuid.uuid4().hex
        fid = "F" + uuid.uuid4().hex[:10].upper()
        self.uploads[ticket] = Upload(fid, filename, length)
        return _ok(upload_url=f"http://127.0.0.1:{self.port}/upload/v1/{ticket}", file_id=fid)

    async def _upload_bytes(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["ticket"])
        if upload is None or upload.data is not None:
            return web.Response(status=404, text="upload not found")
        if request.content_type.startswith("multipart/"):
            data = b""
            async for part in await request.multipart():
                if isinstance(part, BodyPartReader) and part.filename is not None:
                    data = bytes(await part.read())
                    break
        else:
            data = await request.read()
        self.calls.append(("upload", {"ticket": request.match_info["ticket"],
                                      "length": len(data)}))
        if self.upload_failures:
            status = self.upload_failures.pop(0)
            return web.Response(status=status, text="upload failed",
                                headers={"Retry-After": "1"} if status == 429 else {})
        if len(data) != upload.length:
            return web.Response(status=400, text=f"length mismatch: {len(data)}")
        upload.data = data
        return web.Response(text=f"OK - {len(data)}")

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> web.Response:
        try:
            wanted = json.loads(str(args.get("files") or ""))
            ids = [(str(f["id"]), f.get("title")) for f in wanted]
        except (ValueError, TypeError, KeyError):
            return _error("invalid_arguments")
        by_id = {u.file_id: (ticket, u) for ticket, u in self.uploads.items()}
        if not ids or any(fid not in by_id or by_id[fid][1].data is None for fid, _ in ids):
            return _error("file_not_found")
        channel: Channel | None = None
        if args.get("channel_id"):
            channel = self.channels.get(str(args["channel_id"]))
            if channel is None:
                return _error("invalid_channel")
            if BOT_USER not in channel.members:
                return _error("not_in_channel")
        objects = []
        for fid, title in ids:
            ticket, upload = by_id.pop(fid)
            del self.uploads[ticket]
            assert upload.data is not None
            file = self.add_file(BOT_USER, upload.filename, upload.data,
                                 title=str(title) if title else None)
            # the file keeps the id files.getUploadURLExternal gave it
            del self.files[file["id"]], self.blobs[file["id"]]
            for key in ("url_private", "url_private_download", "permalink"):
                file[key] = file[key].replace(file["id"], fid)
            file["id"] = fid
            self.files[fid], self.blobs[fid] = file, upload.data
            objects.append(file)
        if channel is not None:
            message: dict[str, Any] = {
                "type": "message", "subtype": "file_share", "user": BOT_USER,
                "text": str(args.get("initial_comment") or ""), "upload": True,
                "display_as_bot": False, "files": objects, "team": TEAM}
            thread = str(args["thread_ts"]) if args.get("thread_ts") else None

            def share() -> None:  # Slack shares the files a moment after answering
                message["ts"] = self._next_ts()
                assert channel is not None
                self._share(channel, message, objects, thread)
            asyncio.get_running_loop().call_later(self.share_delay, share)
        return _ok(files=[{"id": f["id"], "title": f["title"]} for f in objects])

    def _m_files_info(self, args: dict[str, Any]) -> web.Response:
        file = self.files.get(str(args.get("file")))
        if file is None or file.get("_deleted"):
            return _error("file_not_found")
        return _ok(file=_public(file), comments=[], response_metadata={"next_cursor": ""})

    def _m_files_delete(self, args: dict[str, Any]) -> web.Response:
        file = self.files.get(str(args.get("file")))
        if file is None or file.get("_deleted"):
            return _error("file_not_found")
        if file["user"] != BOT_USER:
            return _error("cant_delete_file")
        file["_deleted"] = True
        return _ok()

    async def _file_bytes(self, request: web.Request) -> web.StreamResponse:
        """``url_private(_download)``: the bytes, to a request with a token that may read
        them; otherwise the sign-in page, as Slack answers."""
        fid = request.match_info["team_file"].removeprefix(f"{TEAM}-")
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        self.downloaded.append((fid, token))
        self._changed.set()
        if token != BOT_TOKEN:
            raise web.HTTPFound(f"/?redir={urllib.parse.quote(request.path)}")
        file, data = self.files.get(fid), self.blobs.get(fid)
        if file is None or data is None or file.get("_deleted"):
            return web.Response(status=404, text="file not found")
        how = self.downloads.get(fid, Download())
        if how.status != 200:
            return web.Response(status=how.status, text="file host failure")
        quoted = urllib.parse.quote(file["name"])
        response = web.StreamResponse(headers={
            "Content-Type": file["mimetype"], "Content-Length": str(len(data)),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}"})
        await response.prepare(request)
        cut = len(data) if how.first is None else how.first
        await response.write(data[:cut])
        if how.gate is not None:
            await how.gate.wait()
        if how.truncate:  # the connection breaks off short of the length
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(data[cut:])
        await response.write_eof()
        return response

    async def _sign_in(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in to Roomlink Test</body></html>",
                            content_type="text/html")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pings(message: dict[str, Any]) -> list[str]:
    """What in a posted message would notify people, as Slack parses it."""
    found = PING.findall(message.get("text", ""))
    if message.get("_link_names"):  # link_names=true turns @here and @name into pings
        found += re.findall(r"@(?:here|channel|everyone)\b", message.get("text", ""))
    return found


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _type(channel: Channel) -> str:
    return "group" if channel.is_private else "channel"


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


@contextlib.asynccontextmanager
async def slack_server(**kwargs: Any) -> AsyncIterator[SlackServer]:
    server = SlackServer(**kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
