"""A local Telegram Bot API server for tests, built from the public Bot API documentation.

It speaks HTTP like ``https://api.telegram.org``: ``{root}/bot{token}/{method}`` with
parameters in the query string, a urlencoded or multipart form, or a JSON body; method
names are case-insensitive; every answer is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``.

Methods: getMe, getUpdates (offset confirms the updates below it, a negative offset keeps
the last ones, limit, timeout long-polls, allowed_updates is remembered, a second poll
terminates the first with 409, a webhook makes it 409), sendMessage (parse_mode HTML
parsed like Telegram does: only its tags, balanced, else "can't parse entities"; 4,096
characters after parsing; reply_parameters; link_preview_options), editMessageText,
deleteMessage, setWebhook, deleteWebhook, getWebhookInfo; files (see tgmedia.py): getFile
(400 "file is too big" over 20 MB) and the download path ``/file/bot<token>/<file_path>``,
sendPhoto and sendDocument with a multipart upload (a photo is checked like Telegram
does: at most 10 MB, an image whose sides add up to at most 10,000 and have a ratio of
at most 20; any file at most 50 MB, else 413; a caption of at most 1,024 characters),
editMessageCaption. A photo sent is kept as its largest size byte for byte (the real
server re-encodes it as JPEG) with a small thumbnail size before it.

The test side plays the people in the chats (:meth:`BotApiServer.say`, ``edit``,
``join``, ``migrate``, ``photo`` and ``document`` for files to post ...) and can make
the next calls fail (:meth:`fail_next`: a 429 with ``retry_after``, a 403 ...).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from tgmedia import (
    FOLDERS,
    MAX_CAPTION,
    MAX_DOWNLOAD,
    MAX_PHOTO,
    MAX_UPLOAD,
    MB,
    StoredFile,
    TooLarge,
    Upload,
    guess_type,
    image_size,
    read_form,
)

MAX_TEXT = 4096
MEDIA = ("photo", "document", "audio", "voice", "video", "animation", "sticker",
         "video_note")
DEFAULT_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post",
                   "callback_query", "my_chat_member", "inline_query")


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def utf16_len(text: str) -> int:
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def utf16_slice(text: str, offset: int, length: int) -> str:
    """The characters an entity covers (its offsets count UTF-16 code units)."""
    data = text.encode("utf-16-le")
    return data[2 * offset: 2 * (offset + length)].decode("utf-16-le")


# -- parse_mode=HTML, as the Bot API's "Formatting options / HTML style" describes it ----

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|"
                  r"[^\s>\"']+))?)*)\s*>")
_ATTR = re.compile(r"([a-zA-Z-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+)))?")
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]+);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
         "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
         "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link",
         "code": "code", "pre": "pre", "blockquote": "blockquote", "tg-emoji": "custom_emoji"}


def _unescape(raw: str) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _NAMED.get(name, m.group(0))  # other named entities stay as written
    return _ENTITY.sub(one, raw)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Text and entities for an HTML-formatted text; ApiError 400 when it is not valid."""
    def fail(why: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {why}")

    def byte_offset(index: int) -> int:
        return len(source[:index].encode("utf-8"))

    text: list[str] = []
    units = 0
    stack: list[tuple[str, int, dict[str, str]]] = []  # (tag, utf16 start, attributes)
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "<":
            m = _TAG.match(source, i)
            if m is None:
                name = re.match(r"</?([^\s>]*)", source[i:])
                raise fail(f'Unsupported start tag "{name.group(1) if name else ""}" at byte '
                           f"offset {byte_offset(i)}")
            closing, tag = m.group(1) == "/", m.group(2).lower()
            if closing:
                if not stack:
                    raise fail(f"Unexpected end tag at byte offset {byte_offset(i)}")
                open_tag, start, attrs = stack.pop()
                if open_tag != tag:
                    raise fail(f'Unmatched end tag at byte offset {byte_offset(i)}, expected '
                               f'"</{open_tag}>", found "</{tag}>"')
                entity = _entity(open_tag, start, units - start, attrs, entities)
                if entity is not None:
                    entities.append(entity)
            else:
                if tag not in _TAGS:
                    raise fail(f'Unsupported start tag "{tag}" at byte offset {byte_offset(i)}')
                attrs = {a.group(1).lower(): next((g for g in a.groups()[1:] if g is not None), "")
                         for a in _ATTR.finditer(m.group(3))}
                if tag == "span" and attrs.get("class") != "tg-spoiler":
                    raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset '
                               f"{byte_offset(i)}")
                stack.append((tag, units, {k: _unescape(v) for k, v in attrs.items()}))
            i = m.end()
            continue
        if ch == "&":
            m = _ENTITY.match(source, i)
            if m is not None:
                value = _unescape(m.group(0))
                text.append(value)
                units += utf16_len(value)
                i = m.end()
                continue
        text.append(ch)
        units += utf16_len(ch)
        i += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(text), entities


def _entity(tag: str, start: int, length: int, attrs: dict[str, str],
            inner: list[dict[str, Any]]) -> dict[str, Any] | None:
    if length == 0:
        return None
    kind = _TAGS[tag]
    entity: dict[str, Any] = {"type": kind, "offset": start, "length": length}
    if tag == "a":
        href = attrs.get("href", "")
        if not href:
            return None
        if href.startswith("tg://user?id="):
            entity = {"type": "text_mention", "offset": start, "length": length,
                      "user": {"id": int(href.split("=", 1)[1] or 0), "is_bot": False,
                               "first_name": ""}}
        else:
            entity["url"] = href
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "pre":
        # <pre><code class="language-x"> sets the language of the block
        for e in inner:
            if e["type"] == "code" and e["offset"] == start and e["length"] == length:
                inner.remove(e)
                if e.get("_language"):
                    entity["language"] = e["_language"]
                break
    elif tag == "code" and attrs.get("class", "").startswith("language-"):
        entity["_language"] = attrs["class"][len("language-"):]
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
    return entity


def _public(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if not k.startswith("_")} for e in entities]


# -- state -------------------------------------------------------------------------------

@dataclass
class Chat:
    id: int
    type: str = "supergroup"  # private, group, supergroup, channel
    title: str = "Project"
    username: str | None = None
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    edits: dict[int, list[str]] = field(default_factory=dict)  # message id -> earlier texts
    deleted: set[int] = field(default_factory=set)
    next_message_id: int = 1
    bot_kicked: bool = False
    migrated_to: int | None = None
    no_rights: set[str] = field(default_factory=set)  # "photos", "documents" the bot may not send

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            out["first_name"] = self.title
        else:
            out["title"] = self.title
        if self.username:
            out["username"] = self.username
        return out


@dataclass
class Failure:
    method: str
    code: int
    description: str
    parameters: dict[str, Any] | None
    times: int


class BotApiServer:
    def __init__(self, token: str = "123456:TEST-roomlink-token") -> None:
        self.token = token
        self.me = {"id": 777000111, "is_bot": True, "first_name": "roomlink",
                   "username": "roomlink_bot", "can_join_groups": True,
                   "can_read_all_group_messages": True, "supports_inline_queries": False}
        self.chats: dict[int, Chat] = {}
        self.updates: list[dict[str, Any]] = []  # not yet confirmed, in order
        self.next_update_id = 500_000
        self.allowed_updates: tuple[str, ...] = DEFAULT_UPDATES
        self.handed: dict[int, float] = {}  # update id -> when getUpdates first returned it
        self.update_of: dict[tuple[int, int], int] = {}  # (chat, message id) -> update id
        self.webhook = ""
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[Failure] = []
        self.polls = 0
        self.on_send: Any = None  # called with each message the bot posts (benchmarks)
        self._next_user = 1000
        self._new = asyncio.Event()
        self._poll: asyncio.Future[None] | None = None  # the getUpdates being held open
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.files: dict[str, StoredFile] = {}  # by file_id
        self._by_path: dict[str, StoredFile] = {}
        self.downloads: list[str] = []  # file paths downloaded, in order
        self.photo_ids: list[str] = []  # file_unique_id of each photo's largest size
        # a download sends half the file, then waits for this to be set (kill -9 tests)
        self.download_gate: asyncio.Event | None = None
        self.break_downloads = False  # a download sends half the file and hangs up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        self._closing = False
        app = web.Application(client_max_size=MAX_UPLOAD + MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._closing = True
        self._new.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the people in the chats -----------------------------------------------------
    def add_chat(self, chat_id: int, type: str = "supergroup", title: str = "Project",
                 username: str | None = None) -> Chat:
        chat = Chat(chat_id, type, title, username)
        self.chats[chat_id] = chat
        return chat

    def user(self, first_name: str, last_name: str | None = None, username: str | None = None,
             is_bot: bool = False) -> dict[str, Any]:
        self._next_user += 1
        user: dict[str, Any] = {"id": self._next_user, "is_bot": is_bot, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        return user

    def push(self, kind: str, payload: Any) -> int:
        """Queue one update (``kind`` is its field: message, edited_message ...)."""
        self.next_update_id += 1
        self.updates.append({"update_id": self.next_update_id, kind: payload})
        self._new.set()
        return self.next_update_id

    def push_raw(self, update: dict[str, Any]) -> int:
        """Queue an update exactly as given (plus an update_id when it has none)."""
        self.next_update_id += 1
        self.updates.append({"update_id": self.next_update_id, **update})
        self._new.set()
        return self.next_update_id

    def _new_message(self, chat: Chat, sender: dict[str, Any] | None, **fields: Any
                     ) -> dict[str, Any]:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()),
                                   "chat": chat.json()}
        if sender is not None:
            message["from"] = sender
        message.update({k: v for k, v in fields.items() if v is not None})
        chat.messages[message_id] = message
        return message

    def say(self, chat_id: int, sender: dict[str, Any], text: str | None = None,
            entities: list[dict[str, Any]] | None = None, reply_to: int | None = None,
            **fields: Any) -> int:
        """A person posts in a chat; returns the message id."""
        chat = self.chats[chat_id]
        reply = None
        if reply_to is not None:
            reply = {k: v for k, v in _visible(chat.messages[reply_to]).items()
                     if k != "reply_to_message"}
        message = self._new_message(chat, sender, text=text, entities=entities,
                                    reply_to_message=reply, **fields)
        kind = "channel_post" if chat.type == "channel" else "message"
        self.update_of[(chat_id, message["message_id"])] = self.push(kind, message)
        return int(message["message_id"])

    def add_file(self, data: bytes, kind: str, ext: str = "", size: int | None = None
                 ) -> StoredFile:
        """Hold a file as Telegram does once someone sent it (``size``: what Telegram
        says it is, when a test wants it to differ)."""
        number = len(self.files)
        stored = StoredFile(f"{kind.upper()}-file-{number}-AgADBAAD", f"AQAD{number}u",
                            data, f"{FOLDERS[kind]}/file_{number}{ext}",
                            len(data) if size is None else size)
        self.files[stored.file_id] = stored
        self._by_path[stored.file_path] = stored
        return stored

    def photo(self, data: bytes) -> list[dict[str, Any]]:
        """The ``photo`` field (PhotoSize array, smallest first) of a photo message whose
        largest size is ``data``."""
        w, h = image_size(data) or (1280, 960)
        scale = 90 / max(w, h)
        thumb = self.add_file(b"thumbnail:" + data[:32], "photo", ".jpg")
        full = self.add_file(data, "photo", ".jpg")
        self.photo_ids.append(full.file_unique_id)
        return [{"file_id": thumb.file_id, "file_unique_id": thumb.file_unique_id,
                 "width": max(1, round(w * scale)), "height": max(1, round(h * scale)),
                 "file_size": thumb.size},
                {"file_id": full.file_id, "file_unique_id": full.file_unique_id,
                 "width": w, "height": h, "file_size": full.size}]

    def document(self, data: bytes, name: str | None, mime: str | None = None,
                 size: int | None = None, kind: str = "document",
                 with_size: bool = True) -> dict[str, Any]:
        """The ``document`` (or ``audio``, ``video`` ...) field of a message carrying
        ``data``; ``with_size=False`` leaves out the optional file_size."""
        ext = ("." + name.rsplit(".", 1)[1]) if name and "." in name else ""
        stored = self.add_file(data, kind, ext, size)
        out: dict[str, Any] = {"file_id": stored.file_id,
                               "file_unique_id": stored.file_unique_id}
        if name is not None:
            out["file_name"] = name
        if mime is not None:
            out["mime_type"] = mime
        if with_size:
            out["file_size"] = stored.size
        return out

    def say_files(self, chat_id: int, sender: dict[str, Any], caption: str | None,
                  files: list[tuple[str, str, bytes]]) -> list[int]:
        """A person sends files (name, type, bytes) "as files" (documents, bytes kept):
        one message, or an album of one message per file sharing a media_group_id, the
        caption on the first, as Telegram's apps do."""
        self._next_user += 1
        group = f"1395{self._next_user}" if len(files) > 1 else None
        return [self.say(chat_id, sender, None, caption=caption if i == 0 else None,
                         document=self.document(data, name, mime), media_group_id=group)
                for i, (name, mime, data) in enumerate(files)]

    def file_of(self, message: dict[str, Any]) -> bytes:
        """The bytes of the file of a message (a photo's largest size)."""
        if message.get("photo"):
            return self.files[message["photo"][-1]["file_id"]].data
        for kind in MEDIA:
            if kind in message and kind != "photo":
                return self.files[message[kind]["file_id"]].data
        raise AssertionError(f"no file in {message}")

    def say_html(self, chat_id: int, sender: dict[str, Any], source: str,
                 reply_to: int | None = None) -> int:
        """A person posts formatted text (as their app would send it: text + entities)."""
        text, entities = parse_html(source)
        return self.say(chat_id, sender, text, _public(entities) or None, reply_to=reply_to)

    def edit(self, chat_id: int, message_id: int, text: str,
             entities: list[dict[str, Any]] | None = None) -> int:
        chat = self.chats[chat_id]
        message = dict(chat.messages[message_id])
        chat.edits.setdefault(message_id, []).append(message.get("text", ""))
        message.update(text=text, edit_date=int(time.time()))
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        chat.messages[message_id] = message
        kind = "edited_channel_post" if chat.type == "channel" else "edited_message"
        return self.push(kind, message)

    def join(self, chat_id: int, user: dict[str, Any]) -> int:
        chat = self.chats[chat_id]
        message = self._new_message(chat, user, new_chat_members=[user])
        return self.push("message", message)

    def leave(self, chat_id: int, user: dict[str, Any]) -> int:
        chat = self.chats[chat_id]
        message = self._new_message(chat, user, left_chat_member=user)
        return self.push("message", message)

    def migrate(self, chat_id: int, new_id: int, announce: bool = True) -> Chat:
        """The group becomes a supergroup with a new id, as Telegram upgrades groups; with
        ``announce`` the two service messages (migrate_to / migrate_from) arrive too."""
        old = self.chats[chat_id]
        new = self.add_chat(new_id, "supergroup", old.title, old.username)
        old.migrated_to = new_id
        if announce:
            admin = self.user("Group", "Admin")
            self.push("message", self._new_message(old, admin, migrate_to_chat_id=new_id))
            self.push("message", self._new_message(new, admin, migrate_from_chat_id=chat_id))
        return new

    def fail_next(self, method: str, code: int, description: str,
                  parameters: dict[str, Any] | None = None, times: int = 1) -> None:
        self.failures.append(Failure(method.lower(), code, description, parameters, times))

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """What the bot posted in a chat, in order, as it stands now."""
        chat = self.chats[chat_id]
        return [m for m in chat.messages.values() if m.get("from", {}).get("id") == self.me["id"]]

    def sent_calls(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method.lower()]

    async def wait_handed_over(self, chat_id: int, message_id: int, timeout: float = 20) -> None:
        update_id = self.update_of[(chat_id, message_id)]
        deadline = time.monotonic() + timeout
        while update_id not in self.handed:
            if time.monotonic() > deadline:
                raise AssertionError(f"update {update_id} was never handed to the bot")
            await asyncio.sleep(0.005)

    # -- HTTP --------------------------------------------------------------------------
    async def _file(self, request: web.Request) -> web.StreamResponse:
        stored = self._by_path.get(request.match_info["path"])
        if request.match_info["token"] != self.token or stored is None:
            return _error(ApiError(404, "Not Found"))
        self.downloads.append(stored.file_path)
        data = stored.data
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(len(data))})
        await response.prepare(request)
        half = len(data) // 2
        await response.write(data[:half])
        if self.break_downloads:  # the connection drops in the middle of the file
            assert request.transport is not None
            request.transport.close()
            return response
        if self.download_gate is not None:
            await self.download_gate.wait()
        for start in range(half, len(data), 256 * 1024):
            await response.write(data[start:start + 256 * 1024])
        await response.write_eof()
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        method = request.match_info["method"].lower()
        try:
            try:
                params = await _params(request)
            except TooLarge:
                raise ApiError(413, "Request Entity Too Large") from None
            self.calls.append((method, params))
            for failure in self.failures:
                if failure.method == method and failure.times > 0:
                    failure.times -= 1
                    raise ApiError(failure.code, failure.description, failure.parameters)
            handler = self._methods().get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
        except ApiError as exc:
            return _error(exc)
        return web.json_response({"ok": True, "result": result})

    def _methods(self) -> dict[str, Any]:
        return {"getme": self._get_me, "getupdates": self._get_updates,
                "sendmessage": self._send_message, "editmessagetext": self._edit_message_text,
                "deletemessage": self._delete_message, "setwebhook": self._set_webhook,
                "getfile": self._get_file, "sendphoto": self._send_photo,
                "senddocument": self._send_document,
                "editmessagecaption": self._edit_message_caption,
                "deletewebhook": self._delete_webhook, "getwebhookinfo": self._webhook_info}

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return self.me

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        self.webhook = str(params.get("url") or "")
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        self.webhook = ""
        if _flag(params.get("drop_pending_updates")):
            self.updates.clear()
        return True

    async def _webhook_info(self, params: dict[str, Any]) -> Any:
        return {"url": self.webhook, "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        if self.webhook:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is "
                                "active; use deleteWebhook to delete the webhook first")
        offset = _int(params, "offset", 0)
        limit = max(1, min(100, _int(params, "limit", 100)))
        timeout = max(0, _int(params, "timeout", 0))
        allowed = _json(params.get("allowed_updates"))
        if isinstance(allowed, list):
            self.allowed_updates = tuple(allowed) if allowed else DEFAULT_UPDATES
        if offset > 0:  # confirms every update below it: they are forgotten
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]
        # a newer poll terminates the one held open, as when two processes poll one bot
        if self._poll is not None and not self._poll.done():
            self._poll.set_exception(ApiError(
                409, "Conflict: terminated by other getUpdates request; make sure that only "
                     "one bot instance is running"))
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._poll = mine
        self.polls += 1
        deadline = time.monotonic() + timeout
        try:
            while True:
                ready = [u for u in self.updates if _kind(u) in self.allowed_updates
                         or _kind(u) is None]
                if ready or self._closing or time.monotonic() >= deadline:
                    break
                self._new.clear()
                waiter = asyncio.ensure_future(self._new.wait())
                await asyncio.wait([waiter, mine], timeout=deadline - time.monotonic(),
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if mine.done():
                    mine.result()  # raises the 409 of a newer poll
        finally:
            if self._poll is mine:
                self._poll = None
        # updates of types not asked for are dropped, as the real server never sends them
        self.updates = [u for u in self.updates
                        if _kind(u) in self.allowed_updates or _kind(u) is None]
        batch = self.updates[:limit]
        now = time.monotonic()
        for u in batch:
            self.handed.setdefault(u["update_id"], now)
        return batch

    def _chat(self, params: dict[str, Any]) -> Chat:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat: Chat | None = None
        text = str(raw)
        if text.startswith("@"):
            chat = next((c for c in self.chats.values()
                         if c.username and c.username.lower() == text[1:].lower()), None)
        elif re.fullmatch(r"-?\d+", text):
            chat = self.chats.get(int(text))
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        if chat.migrated_to is not None:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           {"migrate_to_chat_id": chat.migrated_to})
        if chat.bot_kicked:
            kind = "supergroup chat" if chat.type == "supergroup" else "group chat"
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind}")
        return chat

    @staticmethod
    def _formatted(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        source = params.get("text")
        if source is None:
            raise ApiError(400, "Bad Request: message text is empty")
        source = str(source)
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "html":
            text, entities = parse_html(source)
        elif mode:
            raise ApiError(400, f"Bad Request: unsupported parse_mode {mode!r} in this server")
        else:
            text, entities = source, list(_json(params.get("entities")) or [])
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return text, _public(entities)

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        text, entities = self._formatted(params)
        reply = self._reply_of(chat, params)
        preview = _json(params.get("link_preview_options"))
        if preview is None and params.get("disable_web_page_preview") is not None:
            preview = {"is_disabled": _flag(params.get("disable_web_page_preview"))}
        message = self._new_message(chat, self.me, text=text, entities=entities or None,
                                    reply_to_message=reply, link_preview_options=preview)
        message["_html"] = params.get("text")
        if self.on_send is not None:
            self.on_send(message)
        return _visible(message)

    def _reply_of(self, chat: Chat, params: dict[str, Any]) -> dict[str, Any] | None:
        reply_params = _json(params.get("reply_parameters")) or {}
        reply_id = reply_params.get("message_id", params.get("reply_to_message_id"))
        allow = _flag(reply_params.get("allow_sending_without_reply",
                                       params.get("allow_sending_without_reply")))
        if reply_id in (None, ""):
            return None
        original = chat.messages.get(int(reply_id))
        if original is None or int(reply_id) in chat.deleted:
            if not allow:
                raise ApiError(400, "Bad Request: message to be replied not found")
            return None
        return {k: v for k, v in _visible(original).items() if k != "reply_to_message"}

    @staticmethod
    def _caption(params: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        source = params.get("caption")
        if source in (None, ""):
            return None, []
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "html":
            text, entities = parse_html(str(source))
        elif mode:
            raise ApiError(400, f"Bad Request: unsupported parse_mode {mode!r} in this server")
        else:
            text, entities = str(source), list(_json(params.get("caption_entities")) or [])
        if utf16_len(text) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        return (text or None), _public(entities)

    def _upload(self, chat: Chat, params: dict[str, Any], field: str, rights: str) -> Upload:
        if rights in chat.no_rights:
            raise ApiError(400, f"Bad Request: not enough rights to send {rights} to the chat")
        given = params.get(field)
        if isinstance(given, str) and given in self.files:  # a file_id sent again
            stored = self.files[given]
            return Upload(stored.file_path.rsplit("/", 1)[-1], None, stored.data)
        if isinstance(given, str) and given.startswith("attach://"):
            given = params.get(given[len("attach://"):])
        if not isinstance(given, Upload):
            raise ApiError(400, f"Bad Request: there is no {field} in the request")
        if not given.data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        return given

    def _post_file(self, chat: Chat, params: dict[str, Any], **media: Any) -> Any:
        reply = self._reply_of(chat, params)
        caption, entities = self._caption(params)
        message = self._new_message(chat, self.me, caption=caption,
                                    caption_entities=entities or None,
                                    reply_to_message=reply, **media)
        message["_html"] = params.get("caption")
        if self.on_send is not None:
            self.on_send(message)
        return _visible(message)

    async def _send_photo(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        upload = self._upload(chat, params, "photo", "photos")
        if len(upload.data) > MAX_PHOTO:
            raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        size = image_size(upload.data)
        if size is None:
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        w, h = size
        if w + h > 10000 or max(w, h) > 20 * min(w, h):
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        return self._post_file(chat, params, photo=self.photo(upload.data))

    async def _send_document(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        upload = self._upload(chat, params, "document", "documents")
        document = self.document(upload.data, upload.filename or "document",
                                 guess_type(upload.filename, upload.content_type))
        return self._post_file(chat, params, document=document)

    async def _get_file(self, params: dict[str, Any]) -> Any:
        stored = self.files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        return stored.json()

    async def _edit_message_caption(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self._own(chat, params, "message to edit not found")
        if message.get("from", {}).get("id") != self.me["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        if not any(kind in message for kind in MEDIA):
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption, entities = self._caption(params)
        if caption == message.get("caption") and entities == message.get("caption_entities",
                                                                           []):
            raise ApiError(400, "Bad Request: message is not modified: specified new message "
                                "content and reply markup are exactly the same as a current "
                                "content and reply markup of the message")
        chat.edits.setdefault(message["message_id"], []).append(message.get("caption", ""))
        message.update(edit_date=int(time.time()), _html=params.get("caption"))
        for key in ("caption", "caption_entities"):
            message.pop(key, None)
        if caption:
            message["caption"] = caption
        if entities:
            message["caption_entities"] = entities
        return _visible(message)

    def _own(self, chat: Chat, params: dict[str, Any], missing: str) -> dict[str, Any]:
        message_id = _int(params, "message_id", 0)
        message = chat.messages.get(message_id)
        if message is None or message_id in chat.deleted:
            raise ApiError(400, f"Bad Request: {missing}")
        return message

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self._own(chat, params, "message to edit not found")
        if message.get("from", {}).get("id") != self.me["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text, entities = self._formatted(params)
        if text == message.get("text") and entities == message.get("entities", []):
            raise ApiError(400, "Bad Request: message is not modified: specified new message "
                                "content and reply markup are exactly the same as a current "
                                "content and reply markup of the message")
        chat.edits.setdefault(message["message_id"], []).append(message.get("text", ""))
        message.update(text=text, edit_date=int(time.time()), _html=params.get("text"))
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        return _visible(message)

    async def _delete_message(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self._own(chat, params, "message to delete not found")
        chat.deleted.add(message["message_id"])
        return True


def _visible(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _kind(update: dict[str, Any]) -> str | None:
    return next((k for k in update if k != "update_id"), None)


def _error(exc: ApiError) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return web.json_response(body, status=exc.code)


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON") from None
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type == "multipart/form-data":
            params.update(await read_form(request))
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _json(value: Any) -> Any:
    """Form values carry objects and arrays JSON-serialized."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON") from None
    return value


def _int(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")
