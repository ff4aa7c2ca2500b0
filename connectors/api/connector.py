"""``type: api``: post JSON into a room over HTTP; read a room's stream over a WebSocket.

``POST /v1/rooms/{room}/messages`` with ``{"text": ..., "author": ...}`` answers 202
``{"id": ...}`` once the message is in every store. An ``Idempotency-Key`` header makes
a retried POST safe: the same key in the same room gives the same message, stored once.
``reply_to`` (a message id) makes it a reply. ``PATCH`` / ``DELETE
/v1/rooms/{room}/messages/{id}`` edit or delete a message said in that room.
``GET /v1/rooms/{room}/stream`` is a WebSocket with one JSON text frame per message
delivered into the room. A room with no stream client is down: its messages wait.
``?after=MESSAGE_ID`` first replays what the room received after that message; a client
that cannot keep up is closed with code 4008 (see stream.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import mimetypes
import os
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web
from pydantic import Field, SecretStr, field_validator

from roomlink.connector import (
    BadInput,
    Connector,
    ConnectorOptions,
    Limits,
    RoomDown,
    ShuttingDown,
    check_host_port,
)
from roomlink.connector.httpserve import HttpLimitOptions, HttpServer, serve_file
from roomlink.message.filenames import clean_filename
from roomlink.message.model import Attachment, Inbound, InboundAuthor, Kind, Outbound

from .files import Refused, read_upload
from .requests import checked, error, json_body, json_errors
from .stream import GOING_AWAY, STALL, TOO_SLOW, Frame, StreamClient

log = logging.getLogger("roomlink.connector.api")

MAX_KEY = 256
REPLAY_PAGE = 500
REPLAY_MAX = 10_000  # frames replayed at most on one connect; resume again from the last


class ApiOptions(HttpLimitOptions, ConnectorOptions):
    listen: str = Field(description="host:port to listen on")
    token: SecretStr | None = None
    max_text_length: int = Field(default=65536, ge=1)
    max_file_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1,
        description="bytes of one file in a multipart POST at most; a larger one is 413",
    )
    max_files: int = Field(default=10, ge=1, description="files in one message at most")
    stream_buffer: int = Field(
        default=1_048_576, ge=65536,
        description="bytes of frames that may wait for one stream client; a client with "
        "more waiting is disconnected (close code 4008) and may resume with ?after=ID",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        return check_host_port(v)

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        # `token: "${API_TOKEN:-}"` with the variable unset means: no auth
        return v if v is not None and v.get_secret_value() else None


class ApiConnector(Connector):
    platform = "api"
    Options = ApiOptions

    def __init__(self, options: ConnectorOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, ApiOptions)
        self.opts = options
        self._clients: dict[str, set[StreamClient]] = {r: set() for r in ctx.rooms}
        self._ready: dict[str, asyncio.Event] = {r: asyncio.Event() for r in ctx.rooms}
        self._server: HttpServer | None = None
        # built once: delivery asks for it for every message
        self._limits = Limits(can_impersonate=True, edits=True, deletes=True, files=True,
                              max_file_bytes=options.max_file_bytes)

    @property
    def limits(self) -> Limits:
        return self._limits

    async def start(self) -> None:
        # a multipart body is streamed part by part: this caps the JSON form only
        app = web.Application(client_max_size=self._max_body(), middlewares=[json_errors])
        app.router.add_post("/v1/rooms/{room}/messages", self._post)
        app.router.add_patch("/v1/rooms/{room}/messages/{message_id}", self._change)
        app.router.add_delete("/v1/rooms/{room}/messages/{message_id}", self._change)
        app.router.add_get("/v1/rooms/{room}/stream", self._stream)
        app.router.add_get("/v1/files/{file_id}/{name}", self._download)
        self._server = HttpServer(app, self.opts.listen, self.opts.http_limits(), self.ctx.name)
        await self._server.start()
        self._show_rooms(self.ctx.rooms)

    def _max_body(self) -> int:
        # JSON escapes can double a text's size; leave room for the rest of the body
        return self.opts.max_text_length * 6 + 65536

    async def rooms_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        # the listener and the other rooms' streams stay; a removed room's clients are
        # told it went away, and it answers 404 from now on
        for room in removed:
            for client in self._clients.pop(room, set()):
                client.close(GOING_AWAY, "the room was removed from roomlink's config")
            self._ready.pop(room, None)
        for room in added:
            self._clients.setdefault(room, set())
            self._ready.setdefault(room, asyncio.Event())
        self._show_rooms(added)

    def _show_rooms(self, rooms: Sequence[str]) -> None:
        """Log how to post into each room and how to watch it."""
        host, _, port = self.opts.listen.rpartition(":")
        if host.strip("[]") in ("0.0.0.0", "::", "*", ""):  # a wildcard is no address to call
            host = "127.0.0.1"
        base = f"http://{host}:{port}/v1/rooms"
        auth = " -H 'Authorization: Bearer TOKEN'" if self.opts.token else ""
        for room in rooms:
            log.info("%s room %r: post with  curl%s -d '{\"author\": \"me\", \"text\": \"hi\"}' "
                     "%s/%s/messages   watch with  %s watch %s/%s/stream",
                     self.ctx.name, room, auth, base, room, _roomlink_command(), base, room)

    async def stop(self) -> None:
        clients = [c for room in self._clients.values() for c in room]
        for client in clients:
            client.close(GOING_AWAY, "roomlink is stopping")
        await asyncio.gather(*(c.closed() for c in clients))
        if self._server is not None:
            await self._server.stop()
            self._server = None

    def is_connected(self) -> bool:
        return self._server is not None  # listening; rooms are ready while watched

    def is_ready(self, room: str) -> bool:
        return bool(self._clients.get(room))

    def idle_reason(self, room: str) -> str | None:
        # a room nobody watches is normal: its copies wait in the store for a client
        return None if self.is_ready(room) else "no client"

    async def wait_ready(self, room: str) -> None:
        await self._ready[room].wait()

    # -- HTTP --------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        if self.opts.token is None:
            return True
        given = request.headers.get("Authorization", "")
        expected = "Bearer " + self.opts.token.get_secret_value()
        return hmac.compare_digest(given.encode(), expected.encode())

    def _room(self, request: web.Request, speaking: bool = False) -> str | web.Response:
        """The room the request names, or the error answer (``speaking``: to post in it)."""
        if not self._authorized(request):
            return error(401, "missing or wrong bearer token")
        room = request.match_info["room"]
        if room not in self._clients:
            return error(404, f"unknown room {room!r}")
        if speaking and room not in self.ctx.inbound_rooms:
            return error(403, f"room {room!r} only receives (direction: out)")
        return room

    async def _post(self, request: web.Request) -> web.Response:
        room = self._room(request, speaking=True)
        if isinstance(room, web.Response):
            return room
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= MAX_KEY:
            return error(400, f"Idempotency-Key must be 1 to {MAX_KEY} characters")
        files: list[Attachment] = []
        if request.content_type == "multipart/form-data":
            try:
                upload = await read_upload(
                    request, self.ctx.files, room, max_file_bytes=self.opts.max_file_bytes,
                    max_files=self.opts.max_files, max_message=self._max_body())
            except Refused as refused:
                if refused.__cause__ is not None:  # a store's error says why, never a file
                    log.error("%s: could not keep a file (%s)", self.ctx.name,
                              type(refused.__cause__).__name__)
                return error(refused.status, refused.message)
            files = upload.files
            # without a 'message' part the files come from the connector's own name
            message = upload.message if upload.message is not None else {}
            message.setdefault("author", self.ctx.name)
            message.setdefault("text", "")
            body = checked(message, not files, self.opts.max_text_length)
        else:
            body = await json_body(request, True, self.opts.max_text_length)
        if isinstance(body, web.Response):
            return body
        if not isinstance(body.get("text"), str):
            return error(400, "'text' must be a string")
        # every message said here gets a platform id, so that it can be edited later
        native = f"key:{key}" if key is not None else _new_native_id()
        inbound = Inbound(room=room, author=InboundAuthor(name=body["author"]),
                          text=body["text"], native_id=native,
                          reply_to_native=body.get("reply_to"), attachments=files)
        ids = await self._accept(inbound)
        if isinstance(ids, web.Response):
            return ids
        return web.json_response({"id": ids[0] if ids else None, "ids": ids}, status=202)

    async def _change(self, request: web.Request) -> web.Response:
        """PATCH (edit) or DELETE a message said earlier in this room."""
        room = self._room(request, speaking=True)
        if isinstance(room, web.Response):
            return room
        editing = request.method == "PATCH"
        body = await json_body(request, editing, self.opts.max_text_length)
        if isinstance(body, web.Response):
            return body
        target = request.match_info["message_id"]
        inbound = Inbound(room=room, author=InboundAuthor(name=body["author"]),
                          text=body.get("text") or "", target_native=target,
                          kind=Kind.EDIT if editing else Kind.DELETE)
        ids = await self._accept(inbound)
        if isinstance(ids, web.Response):
            return ids
        if not ids:
            return error(404, f"no message {target!r} was said in room {room!r}")
        return web.json_response({"id": ids[0], "ids": ids}, status=202)

    async def _accept(self, inbound: Inbound) -> list[str] | web.Response:
        # The one connector that does not use ctx.hand_in: the API has no cursor to hold
        # back, and its client is the retry loop. So ctx.accept is called once and each of
        # hand_in's outcomes becomes an answer: bad input a 400 (the client must change
        # it; skipping it silently would lie), shutdown and store failures a 503 (retry,
        # with the same Idempotency-Key). The message id is needed for the answer, too.
        try:
            return await self.ctx.accept(inbound)
        except BadInput as exc:
            return error(400, str(exc))
        except ShuttingDown:
            return error(503, "roomlink is shutting down; retry")
        except Exception as exc:  # the store's error says why; never the message itself
            log.error("%s: could not store a message (%s)", self.ctx.name, type(exc).__name__)
            return error(503, "the message could not be stored; retry")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/files/{file_id}/{name}``: the bytes of a file of this party, to a
        client with the token; 404 for any id or name that is not one of its files."""
        if not self._authorized(request):
            return error(401, "missing or wrong bearer token")
        files = self.ctx.files
        name = request.match_info["name"]
        sha256 = None if files is None else await files.find(request.match_info["file_id"])
        if files is None or sha256 is None or clean_filename(name) != name:
            return error(404, "no such file")
        # the id names the bytes; the name in the URL (the one the frame gave) is shown
        mime, _ = mimetypes.guess_type(name, strict=False)
        kept = Attachment(name=name, mime=mime, sha256=sha256)
        return await serve_file(request, name, mime, None, files.open(kept))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request)
        if isinstance(room, web.Response):
            return room
        replay: list[Frame] = []
        after = request.query.get("after")
        if after is not None:
            found = await self._replay(room, after)
            if isinstance(found, web.Response):
                return found
            replay = found
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        if room not in self._clients:  # a reload removed the room meanwhile
            await ws.close(code=GOING_AWAY, message=b"the room was removed")
            return ws
        client = StreamClient(ws, request, self.opts.stream_buffer)
        # live frames queue from now on; the replay goes first and is not sent twice
        self._clients[room].add(client)
        self._ready[room].set()
        client.start(replay)
        try:
            async for msg in ws:  # the stream is one-way; reading keeps pings answered
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._drop(room, client)
            client.close(GOING_AWAY, "")
        return ws

    async def _replay(self, room: str, after: str) -> list[Frame] | web.Response:
        """What the room received after message ``after``, as frames, from the store."""
        history = self.ctx.history_after
        if history is None:
            return error(400, "this roomlink cannot replay a stream")
        frames: list[Frame] = []
        while True:
            page = await history(room, after, REPLAY_PAGE)
            if page is None:
                return error(404, f"no message {after!r} on record for room {room!r}")
            for out in page:
                if not out.files and out.part == out.parts - 1:
                    # the store gives the parts back without the files delivery planned:
                    # the kept ones within this connector's limit, as delivery gave them
                    limit = self.opts.max_file_bytes
                    out.files = tuple(a for a in out.message.attachments
                                      if a.sha256 and (a.size or 0) <= limit)
                frame = await self._frame(out, out.message.kind)
                frames.append((_key(out), json.dumps(frame, ensure_ascii=False)))
            if len(page) < REPLAY_PAGE or len(frames) >= REPLAY_MAX:
                return frames[:REPLAY_MAX]
            after = page[-1].message.id

    def _drop(self, room: str, client: StreamClient) -> None:
        clients = self._clients.get(room)  # None: a reload removed the room
        if clients is None:
            return
        clients.discard(client)
        if not clients:
            self._ready[room].clear()

    # -- delivery ------------------------------------------------------------------
    async def _broadcast(self, room: str, key: str, frame: dict[str, Any]) -> None:
        """Queue the frame for every client of the room; return once one of them has it on
        its socket (durable before marked delivered). Never waits for the slowest client:
        one that takes nothing for ``STALL`` seconds is closed as too slow."""
        data = json.dumps(frame, ensure_ascii=False)
        size = len(data.encode())
        waiting: dict[asyncio.Future[bool], StreamClient] = {}
        on_socket = False
        for client in list(self._clients.get(room, ())):
            if client.can_write_now(size):
                try:
                    await client.ws.send_str(data)  # cannot wait: see can_write_now
                    on_socket = True
                    continue
                except (ConnectionError, RuntimeError):
                    client.close(GOING_AWAY, "")
                    self._drop(room, client)
                    continue
            written = client.offer(key, data, size)
            if written is None:
                self._drop(room, client)
            else:
                waiting[written] = client
        if on_socket:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STALL
        while waiting:
            done, _ = await asyncio.wait(waiting, timeout=deadline - loop.time(),
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:  # every client still holds it: each is stuck
                for client in waiting.values():
                    client.close(TOO_SLOW, f"too slow: took no frame for {STALL:g}s; "
                                 "reconnect with ?after=<last id>")
                    self._drop(room, client)
                break
            for written in done:
                client = waiting.pop(written)
                if written.result():
                    return
                self._drop(room, client)
        raise RoomDown(f"no stream client on room {room!r} took the message")

    async def _frame(self, out: Outbound, kind: Kind) -> dict[str, Any]:
        m = out.message
        frame: dict[str, Any] = {
            "id": m.id,
            "pipe": m.pipe,
            "author": {"name": m.author.name, "party": m.author.party,
                       "platform": m.author.platform},
            "display_name": out.display_name,
            "text": out.text,
            "kind": kind.value,
            "ts": m.ts.isoformat(),
        }
        if m.reply_to:
            frame["reply_to"] = m.reply_to
        if m.target:
            frame["target"] = m.target
        if out.parts > 1:
            frame["part"], frame["parts"] = out.part, out.parts
        if out.files:
            frame["attachments"] = [await self._attachment(a) for a in out.files]
        return frame

    async def _attachment(self, att: Attachment) -> dict[str, Any]:
        """A file of a frame: what it is, and where this listener answers its bytes."""
        url = None
        if att.sha256 is not None and self.ctx.files is not None:
            file_id = await self.ctx.files.file_id(att)
            url = f"/v1/files/{file_id}/{quote(att.name or 'file', safe='')}"
        found: dict[str, Any] = {"name": att.name, "type": att.mime, "size": att.size,
                                 "sha256": att.sha256, "url": url}
        if att.note:
            found["note"] = att.note
        return found

    async def send(self, out: Outbound) -> str:
        await self._broadcast(out.room, _key(out), await self._frame(out, out.message.kind))
        return out.message.id if out.parts == 1 else f"{out.message.id}.{out.part}"

    async def edit(self, out: Outbound) -> None:
        await self._broadcast(out.room, _key(out), await self._frame(out, Kind.EDIT))

    async def delete(self, out: Outbound) -> None:
        await self._broadcast(out.room, _key(out), await self._frame(out, Kind.DELETE))


def _new_native_id() -> str:
    """The platform id of a message posted without an Idempotency-Key: as unique as a
    random UUID (64 random bits after the nanosecond clock) and in time order, so that
    every store's index of origin ids grows at its end: a random id wrote one more WAL
    page per message and store (bench/README.md, session 28)."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def _key(out: Outbound) -> str:
    return f"{out.message.id}.{out.part}"


def _roomlink_command() -> str:
    """How to run this same roomlink from a shell (a bare ``roomlink`` may not be on the
    PATH: it lives in the virtual environment)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "roomlink":
        return os.path.abspath(argv0) if os.sep in argv0 else argv0
    return f"{sys.executable} -m roomlink"
