"""One Matrix room on a real Synapse, as its members see it (the conformance kit's PeerRoom).

The room's owner creates it and invites the bot; people who speak are accounts of their
own whose display name is the author's name. A watcher (the owner, syncing in the
background) keeps the room's timeline, from which :meth:`MatrixPeer.posts` shows what the
bridge posted: author and text from its HTML, edits applied, redactions marked.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
from bs4 import BeautifulSoup
from nio.crypto.attachments import decrypt_attachment
from synapsekit import SyncProxy, User, register

from conformance import PeerRoom, Post
from filekit import PeerFile

FILE_KINDS = {"m.image", "m.file", "m.audio", "m.video"}


def file_kind(mime: str) -> str:
    for prefix, kind in (("image/", "m.image"), ("audio/", "m.audio"), ("video/", "m.video")):
        if mime.startswith(prefix):
            return kind
    return "m.file"


class MatrixPeer(PeerRoom):
    connector_type = "matrix"
    can_edit = can_delete = shows_edits = shows_deletes = True
    no_files = None
    files_apart = "a Matrix event holds one file: several are events of their own"

    def __init__(self, http: aiohttp.ClientSession, base: str, proxy: SyncProxy,
                 keys: Path) -> None:
        self.http = http
        self.base = base
        self.proxy = proxy
        self.keys = keys
        self.room = ""
        self.room_id = ""
        self.owner: User
        self.bot: User
        self.people: dict[str, User] = {}
        self.timeline: list[dict[str, Any]] = []
        self.password_login = False  # log in with the password instead of the token
        self.options: dict[str, Any] = {}  # more connector options
        self._watcher: asyncio.Task[None] | None = None
        self.with_post: dict[str, list[dict[str, Any]]] = {}  # post -> its files' contents

    async def setup(self, encrypted: bool = False) -> None:
        self.owner = await register(self.http, self.base, "owner")
        self.bot = await register(self.http, self.base, "bridge")
        self.room_id = await self.owner.create_room([self.bot.user_id], encrypted=encrypted)
        self.room = self.room_id  # as the config names it (a test may use an alias)
        self._watcher = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def connector_options(self) -> dict[str, Any]:
        login = ({"password": self.bot.password} if self.password_login
                 else {"access_token": self.bot.token})
        return {"homeserver": self.proxy.url, "user_id": self.bot.user_id, **login,
                "key_store": str(self.keys), "sync_timeout": 5, "reconnect_initial": 0.2,
                "reconnect_max": 2, **self.options}

    async def _watch(self) -> None:
        since: str | None = None
        while True:
            params = {"timeout": "1000",
                      "filter": '{"room":{"timeline":{"limit":1000}}}'}
            if since:
                params["since"] = since
            try:
                data = await self.owner.call("GET", "/sync", **params)
            except (aiohttp.ClientError, AssertionError, OSError):
                await asyncio.sleep(0.2)  # the homeserver is restarting
                continue
            since = data["next_batch"]
            room = data.get("rooms", {}).get("join", {}).get(self.room_id, {})
            self.timeline.extend(room.get("timeline", {}).get("events", []))

    async def bot_joined(self, timeout: float = 30) -> None:
        """Wait until the bridge accepted its invite (only then does it hear the room)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(e["type"] == "m.room.member" and e.get("state_key") == self.bot.user_id
                      and e["content"].get("membership") == "join" for e in self.timeline):
            assert asyncio.get_running_loop().time() < deadline, "the bot never joined"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # its next /sync starts from the join

    async def wait_ready(self) -> None:
        await self.bot_joined()

    async def person(self, name: str) -> User:
        if name not in self.people:
            user = await register(self.http, self.base, name)
            await user.set_name(name)
            await user.join(self.room_id)
            self.people[name] = user
        return self.people[name]

    async def say(self, text: str, author: str) -> str:
        user = await self.person(author)
        await self.bot_joined()
        return await user.send(self.room_id, {"msgtype": "m.text", "body": text})

    async def reply(self, to_native: str, text: str, author: str) -> str:
        user = await self.person(author)
        return await user.send(self.room_id, {
            "msgtype": "m.text", "body": text,
            "m.relates_to": {"m.in_reply_to": {"event_id": to_native}}})

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        """One event per file, the first with ``text`` as its caption (``body`` unlike
        ``filename``), as Element sends a captioned upload."""
        user = await self.person(author)
        await self.bot_joined()
        first = ""
        for index, f in enumerate(files):
            content = {"msgtype": file_kind(f.type), "body": text if index == 0 else f.name,
                       "filename": f.name, "url": await user.upload(f.data, f.type, f.name),
                       "info": {"mimetype": f.type, "size": len(f.data)}}
            event_id = await user.send(self.room_id, content)
            first = first or event_id
        return first

    async def files_of(self, post: Post) -> list[PeerFile]:
        """The files that followed ``post``, downloaded (and decrypted) as Element does."""
        self.posts()
        return [await fetch(self.owner, c) for c in self.with_post.get(post.native_id, [])]

    def _sender_of(self, event_id: str) -> User:
        sender = next(e["sender"] for e in self.timeline if e["event_id"] == event_id)
        return next(u for u in self.people.values() if u.user_id == sender)

    async def edit(self, native_id: str, text: str) -> None:
        await self._sender_of(native_id).send(self.room_id, {
            "msgtype": "m.text", "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": native_id}})

    async def delete(self, native_id: str) -> None:
        await self._sender_of(native_id).redact(self.room_id, native_id)

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        await self.proxy.wait_synced(native_id, timeout)

    def posts(self) -> list[Post]:
        """What the bridge posted, as a member sees it now."""
        posts: dict[str, Post] = {}
        self.with_post = {}
        for event in self.timeline:
            if event.get("sender") != self.bot.user_id:
                continue
            content = event.get("content", {})
            if event["type"] == "m.room.redaction":
                target = event.get("redacts") or content.get("redacts")
                if target in posts:
                    posts[target].deleted = True
                continue
            if event["type"] != "m.room.message":
                continue
            relates = content.get("m.relates_to", {})
            if relates.get("rel_type") == "m.replace":
                post = posts.get(relates.get("event_id"))
                if post is not None:
                    post.edits.append(post.text)
                    post.author, post.text = shown(content["m.new_content"])
                    post.raw = content["m.new_content"]
                continue
            if content.get("msgtype") in FILE_KINDS and posts:  # read with the post above
                self.with_post.setdefault(list(posts)[-1], []).append(content)
                continue
            author, text = shown(content)
            reply = relates.get("m.in_reply_to", {}).get("event_id")
            posts[event["event_id"]] = Post(native_id=event["event_id"], text=text,
                                            author=author, reply_to=reply, raw=content)
        return list(posts.values())

    def assert_inert(self, post: Post, hostile: str) -> None:
        assert_inert(post.raw, post.author, hostile)


async def fetch(user: User, content: dict[str, Any]) -> PeerFile:
    """A file event's file: its name, its type and its bytes (decrypted when encrypted)."""
    info = content.get("info", {})
    secret = content.get("file")
    if secret is None:
        data = await user.download(content["url"])
    else:
        data = decrypt_attachment(await user.download(secret["url"]), secret["key"]["k"],
                                  secret["hashes"]["sha256"], secret["iv"])
    return PeerFile(content.get("filename") or content["body"], info.get("mimetype", ""), data)


def shown(content: dict[str, Any]) -> tuple[str, str]:
    """(author, text) of a relayed message as an HTML client shows it."""
    if "formatted_body" not in content:
        author, _, text = content.get("body", "").partition(": ")
        return author, text
    soup = BeautifulSoup(content["formatted_body"], "html.parser")
    strong = soup.find("strong")
    author = strong.get_text() if strong is not None else ""
    if strong is not None:
        strong.decompose()
    return author, soup.get_text().removeprefix(":").strip()


def assert_inert(content: dict[str, Any], author: str, hostile: str) -> None:
    """Nothing but the author's name is markup; nothing relayed can ping anyone."""
    assert content.get("m.mentions") == {}, content  # no @room, no user mention acts
    soup = BeautifulSoup(content["formatted_body"], "html.parser")
    tags = [tag.name for tag in soup.find_all(True)]
    assert set(tags) <= {"strong", "p", "br"} and tags.count("strong") == 1, content
    shown_text = " ".join(f"{author} {soup.get_text()}".split())
    assert " ".join(hostile.split()) in shown_text
    assert "\n" not in author
