"""The conformance kit run with an API room standing in for the platform.

This keeps the kit itself honest: every scenario passes against the one connector whose
every behaviour is already proven elsewhere, so a kit failure on a new connector points at
the connector.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import conformance
from conformance import Post
from filekit import PeerFile, post_files, received
from rlkit import Room, free_port


class ApiPeer(conformance.PeerRoom):
    """An API room as the 'platform': its users post over HTTP and read its stream."""

    connector_type = "api"
    room = "platform"
    can_edit = can_delete = shows_edits = shows_deletes = True
    no_files = None  # a multipart POST in, frames with links out

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.port = free_port()
        self.users = Room(http, self.port, self.room)
        self.stream = self.users.stream()
        self._unanswered: tuple[asyncio.Task[bytes], str, str, str] | None = None

    def connector_options(self) -> dict[str, Any]:
        return {"listen": f"127.0.0.1:{self.port}"}

    async def say(self, text: str, author: str) -> str:
        return str((await self.users.post(text, author))["id"])

    async def reply(self, to_native: str, text: str, author: str) -> str:
        return str((await self.users.post(text, author, reply_to=to_native))["id"])

    async def edit(self, native_id: str, text: str) -> None:
        await self.users.edit(native_id, text, "someone")

    async def delete(self, native_id: str) -> None:
        await self.users.delete(native_id, "someone")

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        status, answer = await post_files(self.users.session, self.users.base, text, author,
                                          files)
        assert status == 202, answer
        return str(answer["id"])

    async def files_of(self, post: Post) -> list[PeerFile]:
        return await received(self.users.session, self.users.base, post.raw)

    def posts(self) -> list[Post]:
        posts: dict[str, Post] = {}
        for frame in self.stream.frames:
            if frame["kind"] == "message":
                posts[frame["id"]] = Post(frame["id"], frame["text"], frame["display_name"],
                                          frame.get("reply_to"), raw=frame)
            elif frame["kind"] == "edit":
                post = posts[frame["target"]]
                post.edits.append(post.text)
                post.text = frame["text"]
            elif frame["kind"] == "delete":
                posts[frame["target"]].deleted = True
        return list(posts.values())

    def assert_inert(self, post: Post, hostile: str) -> None:
        # a JSON client gets text as data; inert means exactly what was said, nothing added
        assert hostile in (post.text, post.author), json.dumps(post.raw)

    # -- the crash: an HTTP client that got no 202 retries with the same Idempotency-Key
    async def say_unacknowledged(self, text: str, author: str) -> None:
        """Send the whole POST on a socket of its own: once written, the bridge has it.
        Its answer (there should be none: the store is locked) is read in the background."""
        key = uuid.uuid4().hex
        body = json.dumps({"text": text, "author": author}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"POST /v1/rooms/{self.room}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()

        async def answer() -> bytes:
            try:
                with contextlib.suppress(ConnectionError):
                    return await reader.read()
                return b""
            finally:
                writer.close()

        self._unanswered = (asyncio.create_task(answer()), key, text, author)

    async def redeliver(self) -> None:
        assert self._unanswered is not None
        answered, key, text, author = self._unanswered
        assert await asyncio.wait_for(answered, 10) == b"", "the POST was answered"
        await self.users.post_until_accepted(text, author, key)


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        peer = ApiPeer(http)
        async with conformance.harness(tmp_path, peer) as h, peer.stream:
            await scenario(h)
