"""The conformance kit run with an API room standing in for the platform.

This keeps the kit itself honest: every scenario passes against the one connector whose
every behaviour is already proven elsewhere, so a kit failure on a new connector points at
the connector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import conformance
from conformance import Post
from rlkit import Room, free_port


class ApiPeer:
    """An API room as the 'platform': its users post over HTTP and read its stream."""

    connector_type = "api"
    room = "platform"
    can_edit = can_delete = shows_edits = shows_deletes = True

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.port = free_port()
        self.users = Room(http, self.port, self.room)
        self.stream = self.users.stream()

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

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        return None  # the POST answered: the message is already stored


# An API client has no cursor to acknowledge: its POST is answered only once the message
# is stored, so the crash scenario does not apply (test_durability kills the daemon under
# API traffic instead).
SCENARIOS = [s for s in conformance.ALL if s is not conformance.kill_between_receive_and_store]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        peer = ApiPeer(http)
        async with conformance.harness(tmp_path, peer) as h, peer.stream:
            await scenario(h)
