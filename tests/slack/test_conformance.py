"""The connector conformance kit (tests/conformance.py) against the local Slack server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slackkit import LOBBY, SlackServer, pings, slack_options, slack_server

import conformance
from filekit import PeerFile

MENTION = re.compile(r"<(?:[^<>|]*\|)?([^<>]*)>")
# a file share cannot carry a username: the bridge names the author in the comment
FILE_AUTHOR = re.compile(r"^\*(.+?)\*: ?")


def visible(mrkdwn: str) -> str:
    """What a Slack user reads: links by their label, entities decoded."""
    text = MENTION.sub(lambda m: m.group(1), mrkdwn)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class SlackPeerRoom(conformance.PeerRoom):
    room = "#acme-project"
    connector_type = "slack"
    can_edit = can_delete = shows_edits = shows_deletes = True
    no_files = None

    def __init__(self, server: SlackServer) -> None:
        self.server = server
        self.users: dict[str, str] = {}

    def connector_options(self) -> dict[str, Any]:
        return slack_options(self.server)

    def _user(self, name: str) -> str:
        if name not in self.users:
            uid = f"U0PEER{len(self.users):03d}"
            self.server.add_user(uid, name.lower().replace(" ", "."), real_name=name)
            self.users[name] = uid
        return self.users[name]

    async def say(self, text: str, author: str) -> str:
        return self.server.say(LOBBY, self._user(author), text)

    async def reply(self, to_native: str, text: str, author: str) -> str:
        return self.server.say(LOBBY, self._user(author), text, thread_ts=to_native)

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        return self.server.upload(LOBBY, self._user(author),
                                  [(f.name, f.data, f.type) for f in files], text)

    async def files_of(self, post: conformance.Post) -> list[PeerFile]:
        # as a Slack user gets them: the name and type Slack shows, the bytes it serves
        return [PeerFile(name, mime, data) for name, mime, data
                in self.server.file_bytes(post.raw)]

    async def edit(self, native_id: str, text: str) -> None:
        self.server.edit(LOBBY, native_id, text)

    async def delete(self, native_id: str) -> None:
        self.server.delete(LOBBY, native_id)

    def posts(self) -> list[conformance.Post]:
        return [self._post(m) for m in self.server.history(LOBBY)]

    def _post(self, m: dict[str, Any]) -> conformance.Post:
        text, author = m["text"], m.get("username", "")
        named = FILE_AUTHOR.match(text) if m.get("files") else None
        if named:
            text, author = text[named.end():], visible(named.group(1))
        return conformance.Post(
            native_id=m["ts"], text=visible(text), author=author,
            reply_to=m.get("thread_ts"), edits=[visible(t) for t in m.get("_edits", [])],
            deleted=bool(m.get("_deleted")), raw=m)

    def assert_inert(self, post: conformance.Post, hostile: str) -> None:
        raw = post.raw
        assert pings(raw) == [], raw
        # relayed text forms no control sequence at all: every < and > is an entity
        assert "<" not in raw["text"] and ">" not in raw["text"], raw["text"]
        assert not any(ord(c) < 32 for c in raw.get("username", "")), raw

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        await self.server.wait(lambda: self.server.handed_over(native_id), timeout,
                               f"the envelope of {native_id}")


@pytest.fixture
async def server() -> AsyncIterator[SlackServer]:
    async with slack_server() as s:
        s.add_channel("C0GENERAL", "general")
        s.add_channel(LOBBY, "acme-project")
        yield s


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path,
                           server: SlackServer) -> None:
    async with conformance.harness(tmp_path, SlackPeerRoom(server)) as h:
        await server.wait(lambda: server.connections > 0, what="a Socket Mode connection")
        await scenario(h)
