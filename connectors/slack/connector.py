"""``type: slack``: one Slack app; rooms are channel names (``"#acme"``) or ids (``C0123ABCD``).

Inbound comes over Socket Mode (no public endpoint needed). Each ``events_api`` envelope
is acknowledged only after ``ctx.hand_in`` returned True, so an event that arrived just before
a crash is delivered again by Slack, and the deterministic message id (channel + ``ts``)
makes the second one a no-op; within a run, ``event_id`` and channel + ``ts`` de-duplicate
Slack's retries. Outbound is the Web API: ``chat.postMessage`` under the author's name
(``username``/``icon_url``), ``chat.update``, ``chat.delete``, replies in threads. A 429
becomes :class:`RateLimited` (the core waits ``Retry-After`` and sends the same post again);
errors that can never succeed are :class:`PermanentError` with Slack's error code (what is
posted, and that mapping of Slack's answers, are in :mod:`.outbound`).
Files travel both ways (see :mod:`.files`): received ones are downloaded and kept before
the event is handed in, kept ones are posted with Slack's external upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from roomlink.connector import Connector, ConnectorOptions, FileRefused, Limits, RoomDown, backoff
from roomlink.message.model import Outbound

from .files import Call, SlackFiles
from .inbound import Directory, Me, to_inbound
from .options import SlackOptions
from .outbound import call_web_api, file_comment, identity, render
from .socketmode import BackoffSocketModeClient

CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
CHANNEL_NAME = re.compile(r"^[a-z0-9_\-\u00c0-\uffff.]{1,80}$")
MEMORY = 50_000  # event ids, channel+ts pairs, posted ts and thread roots remembered


def _remember(memory: OrderedDict[Any, Any], key: Any, value: Any = None) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > MEMORY:
        memory.popitem(last=False)


def _channel_name(room: str) -> str:
    return room.lstrip("#").lower()


class SlackConnector(Connector):
    platform = "slack"
    Options = SlackOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, SlackOptions)
        self.opts = options
        self.log = ctx.log
        self.me: Me | None = None
        self._http: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._socket: BackoffSocketModeClient | None = None
        self._directory: Directory | None = None
        self._channel: dict[str, str] = {}  # room -> channel id
        self._room: dict[str, str] = {}  # channel id -> room
        self._ready = {room: asyncio.Event() for room in ctx.rooms}
        self._pending = set(ctx.rooms)  # rooms not mapped to a channel id yet
        self._tried: set[str] = set()  # rooms looked for at least once (then: quietly)
        self._resolve_now = asyncio.Event()  # a reload added rooms: look for them now
        self._inbox: asyncio.Queue[SocketModeRequest] = asyncio.Queue()
        self._events: OrderedDict[str, None] = OrderedDict()  # event ids stored
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()  # (channel, ts) stored
        self._posted: OrderedDict[tuple[str, str], None] = OrderedDict()  # (channel, ts) ours
        self._roots: OrderedDict[tuple[str, str], str] = OrderedDict()  # (channel, ts) -> root
        self._shares: OrderedDict[tuple[str, str], None] = OrderedDict()  # ours, with files
        self._tasks: list[asyncio.Task[None]] = []
        self._files: SlackFiles | None = None  # once started, where the core keeps files

    @property
    def limits(self) -> Limits:
        return Limits(
            max_text_length=self.opts.max_text_length,
            room_rates=((self.opts.room_rate, self.opts.room_burst),),
            can_impersonate=self.opts.post_as_author,
            default_nick_format="{nick}" if self.opts.post_as_author else "*{nick}*: ",
            edits=True,
            deletes=True,
            files=self.ctx.files is not None,
            max_file_bytes=self.opts.max_file_bytes,
        )

    @classmethod
    def normalize_room(cls, room: str) -> str:
        if CHANNEL_ID.match(room):
            return room
        name = room.strip().lstrip("#").lower()
        if not CHANNEL_NAME.match(name):
            raise ValueError("a Slack room is a channel name such as \"#acme-project\" "
                             "(lower-case letters, digits, - and _) or a channel id such "
                             "as C0123ABCD")
        return "#" + name

    def is_connected(self) -> bool:
        socket = self._socket
        session = socket.current_session if socket is not None else None
        return session is not None and not session.closed

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._web = AsyncWebClient(
            token=self.opts.bot_token.get_secret_value(), base_url=self.opts.api_url,
            session=self._http, timeout=int(self.opts.request_timeout), logger=self.log,
            retry_handlers=[],  # the core retries, and counts the attempts
        )
        self._directory = Directory(self._web, self.log)
        if self.ctx.files is not None:
            self._files = SlackFiles(
                self._http, self.ctx.files, self.opts.bot_token.get_secret_value(),
                self.opts.api_url, self.opts.max_file_bytes, self.opts.request_timeout,
                self.log, self.ctx.name)
        self._tasks.append(asyncio.create_task(self._run(), name=f"{self.ctx.name} slack"))
        self._tasks.append(asyncio.create_task(self._inbound_loop(),
                                               name=f"{self.ctx.name} inbound"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._socket is not None:
            await self._socket.close()  # type: ignore[no-untyped-call]
        if self._http is not None:
            await self._http.close()

    def is_ready(self, room: str) -> bool:
        ready = self._ready.get(room)
        return ready is not None and ready.is_set()

    async def wait_ready(self, room: str) -> None:
        await self._ready[room].wait()

    async def _run(self) -> None:
        """Learn who we are, find the rooms, then open Socket Mode (echoes need ``me``)."""
        assert self._web is not None
        self.me = await self._auth_test()
        await self._resolve_pending()
        socket = BackoffSocketModeClient(
            app_token=self.opts.app_token.get_secret_value(), web_client=self._web,
            logger=self.log, ping_interval=self.opts.ping_interval,
            initial=self.opts.reconnect_initial, maximum=self.opts.reconnect_max)
        socket.socket_mode_request_listeners.append(self._on_request)
        self._socket = socket
        await socket.connect()  # type: ignore[no-untyped-call]
        while True:  # a channel created, the bot invited, a room added later: pick it up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.opts.resolve_interval if self._pending
                                           else None):
                    await self._resolve_now.wait()
            self._resolve_now.clear()
            await self._resolve_pending()

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # Socket Mode stays connected: events of a removed channel are no longer relayed
        # (ctx.inbound_rooms), an added room is looked up as at start
        for room in removed:
            self._pending.discard(room)
            self._ready.pop(room, None)
            cid = self._channel.pop(room, None)
            if cid is not None and self._room.get(cid) == room:
                del self._room[cid]
        for room in added:
            self._ready.setdefault(room, asyncio.Event())
            self._pending.add(room)
        self._resolve_now.set()

    async def _resolve_pending(self) -> None:
        """Look for the rooms not mapped to a channel yet; say why for each not found (the
        first time loudly, then at debug level)."""
        if not self._pending:
            return
        rooms = sorted(self._pending)
        quiet = all(room in self._tried for room in rooms)
        self._tried.update(rooms)
        missing = await self._resolve(rooms, quiet=quiet)
        # a reload may have removed a room meanwhile
        self._pending = (self._pending - set(rooms)) | (set(missing) & set(self._ready))

    async def _auth_test(self) -> Me:
        assert self._web is not None
        attempt = 0
        while True:
            try:
                answer = await self._web.auth_test()
                self.log.info("%s: connected to Slack team %s as %s", self.ctx.name,
                              answer.get("team"), answer.get("user"))
                return Me(user_id=str(answer["user_id"]), bot_id=answer.get("bot_id"))
            except Exception as exc:
                attempt += 1
                delay = backoff(attempt, self.opts.reconnect_initial, self.opts.reconnect_max)
                self.log.error("%s: auth.test failed (%s); retrying in %.1fs", self.ctx.name,
                               _reason(exc), delay)
                await asyncio.sleep(delay)

    async def _resolve(self, rooms: list[str], quiet: bool = False) -> list[str]:
        """Map rooms to channel ids; return those that could not be (each logged)."""
        assert self._web is not None and self._directory is not None
        by_name: dict[str, dict[str, Any]] = {}
        try:
            pages = await self._web.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=1000)
            async for page in pages:
                for found in page.get("channels") or []:
                    by_name[str(found.get("name", "")).lower()] = found
                    self._directory.channel_names[str(found["id"])] = str(found["name"])
        except Exception as exc:
            self.log.error("%s: conversations.list failed (%s)", self.ctx.name, _reason(exc))
        missing = []
        for room in rooms:
            channel: dict[str, Any] | None = None
            if CHANNEL_ID.match(room):
                channel = await self._info(room)
            else:
                channel = by_name.get(_channel_name(room))
            problem = None
            if channel is None:
                problem = "no such channel (or the app cannot see it)"
            elif not channel.get("is_member", channel.get("is_private", False)):
                problem = "the bot is not in this channel: invite it with /invite @<bot name>"
            if problem is not None:
                missing.append(room)
                log = self.log.debug if quiet else self.log.error
                log("%s: room %s: %s; retrying every %.0fs", self.ctx.name, room, problem,
                    self.opts.resolve_interval)
                continue
            assert channel is not None
            if room not in self._ready:  # a reload removed it meanwhile
                continue
            cid = str(channel["id"])
            self._channel[room], self._room[cid] = cid, room
            self._ready[room].set()
        return missing

    async def _info(self, cid: str) -> dict[str, Any] | None:
        assert self._web is not None
        try:
            answer = await self._web.conversations_info(channel=cid)
        except Exception as exc:
            self.log.error("%s: conversations.info %s failed (%s)", self.ctx.name, cid,
                           _reason(exc))
            return None
        channel: dict[str, Any] = answer["channel"]
        return channel

    # -- inbound -----------------------------------------------------------------------
    async def _on_request(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest
                          ) -> None:
        # runs in one task per envelope: queue at once (no await before) to keep the order
        if req.type == "events_api":
            self._inbox.put_nowait(req)
        else:
            await self._ack(req)

    async def _ack(self, req: SocketModeRequest) -> None:
        if self._socket is None:
            return
        try:
            await self._socket.send_socket_mode_response(
                SocketModeResponse(envelope_id=req.envelope_id))
        except Exception as exc:  # Slack sends it again; it is then de-duplicated
            self.log.info("%s: could not acknowledge envelope %s (%s)", self.ctx.name,
                          req.envelope_id, exc)

    async def _inbound_loop(self) -> None:
        while True:
            req = await self._inbox.get()
            try:
                if not await self._handle(req):
                    return
            except Exception:  # a malformed event must not stop the others
                self.log.exception("%s: could not handle envelope %s", self.ctx.name,
                                   req.envelope_id)
                await self._ack(req)

    async def _handle(self, req: SocketModeRequest) -> bool:
        """Store one event, then acknowledge it; False once roomlink is shutting down."""
        assert self.me is not None and self._directory is not None
        payload = req.payload or {}
        event_id = str(payload.get("event_id") or "")
        event = payload.get("event") or {}
        if event_id and event_id in self._events:
            await self._ack(req)
            return True
        if event.get("type") == "user_change" and isinstance(event.get("user"), dict):
            self._directory.update(event["user"])
        cid = str(event.get("channel") or "")
        room = self._room.get(cid)
        inbound = None
        if event.get("type") == "message" and room in self.ctx.inbound_rooms:
            assert room is not None
            ts = str(event.get("ts") or "")
            if (cid, ts) not in self._seen and (cid, ts) not in self._posted:
                inbound = await to_inbound(event, room, self.me, self._directory,
                                           self.opts.relay_bots)
            if inbound is not None and self._files is not None and inbound.attachments:
                # downloaded and kept before the hand-in (and so before the ack): a crash
                # meanwhile leaves nothing, and Slack delivers the event again
                inbound.attachments = await self._files.receive(room, event["files"],
                                                                self._file_info)
        if inbound is not None:
            # acknowledged only once handed in (stored, or skipped as bad input); on
            # shutdown it is not: Slack delivers it again after the restart
            if not await self.ctx.hand_in(inbound):
                return False
            if inbound.native_id:
                _remember(self._seen, (cid, inbound.native_id))
                _remember(self._roots, (cid, inbound.native_id),
                          inbound.reply_to_native or inbound.native_id)
        if event_id:
            _remember(self._events, event_id)
        await self._ack(req)
        return True

    # -- outbound ----------------------------------------------------------------------
    def _cid(self, room: str) -> str:
        cid = self._channel.get(room)
        if cid is None:
            raise RoomDown(f"{room} is not resolved yet")
        return cid

    async def send(self, out: Outbound) -> str:
        assert self._web is not None
        cid = self._cid(out.room)
        as_author = self.opts.post_as_author
        args: dict[str, Any] = {"channel": cid, "text": render(out, as_author),
                                **identity(out, as_author)}
        root = None
        # a reply to files whose message Slack never named ("files:..."): no thread
        if out.reply_to_native and not out.reply_to_native.startswith("files:"):
            root = self._roots.get((cid, out.reply_to_native), out.reply_to_native)
            args["thread_ts"] = root
        if out.files:
            return await self._send_files(out, cid, root)
        answer = await self._call("chat.postMessage", self._web.chat_postMessage, **args)
        ts = str(answer["ts"])
        _remember(self._posted, (cid, ts))
        _remember(self._roots, (cid, ts), root or ts)
        return ts

    async def _send_files(self, out: Outbound, cid: str, root: str | None) -> str:
        """Post ``out`` with its files (Slack's external upload); the text, with the
        author's name (an upload cannot carry a ``username``), is the initial comment.
        The id is the message's ts, or ``files:F1,F2`` when Slack did not say it."""
        assert self._web is not None
        if self._files is None:
            raise FileRefused("files are not kept here")
        ids, ts = await self._files.upload(self._call, self._web, cid, out.files,
                                           file_comment(out, self.opts.post_as_author),
                                           root)
        if ts is None:
            return "files:" + ",".join(ids)
        _remember(self._posted, (cid, ts))
        _remember(self._shares, (cid, ts))
        _remember(self._roots, (cid, ts), root or ts)
        return ts

    async def edit(self, out: Outbound) -> None:
        assert self._web is not None and out.target_native is not None
        cid = self._cid(out.room)
        if out.part > 0:  # the first part stands for the message; later parts stay
            return
        if out.target_native.startswith("files:"):
            self.log.info("%s: the message sharing %s is not known; its edit is not "
                          "relayed", self.ctx.name, out.target_native[6:])
            return
        shared = (cid, out.target_native) in self._shares  # this run posted it with files
        text = (file_comment if shared else render)(out, self.opts.post_as_author)
        await self._call("chat.update", self._web.chat_update, channel=cid,
                         ts=out.target_native, text=text)

    async def delete(self, out: Outbound) -> None:
        assert self._web is not None and out.target_native is not None
        if out.target_native.startswith("files:"):  # no message ts known: the files go
            for fid in out.target_native[6:].split(","):
                await self._call("files.delete", self._web.files_delete, file=fid)
            return
        await self._call("chat.delete", self._web.chat_delete, channel=self._cid(out.room),
                         ts=out.target_native)

    async def _file_info(self, fid: str) -> dict[str, Any] | None:
        assert self._web is not None
        try:
            answer = await self._web.files_info(file=fid)
        except Exception as exc:
            self.log.warning("%s: files.info %s failed (%s)", self.ctx.name, fid, _reason(exc))
            return None
        found = answer.get("file")
        return found if isinstance(found, dict) else None

    async def _call(self, method: str, call: Call, **args: Any) -> AsyncSlackResponse:
        return await call_web_api(self.log, self.ctx.name, method, call, **args)


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        code = data.get("error") if isinstance(data, dict) else None
        return str(code or f"HTTP {exc.response.status_code}")
    return f"{type(exc).__name__}: {exc}"
