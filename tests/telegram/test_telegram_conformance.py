"""The connector conformance kit (tests/conformance.py) against the Bot API test server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tgkit import GROUP, GROUP_ROOM, parse_html, shown

import conformance
from filekit import PeerFile


class TelegramGroup(conformance.PeerRoom):
    """The test server's group as its members see it."""

    room = GROUP_ROOM
    connector_type = "telegram"
    can_edit = True
    can_delete = False  # the Bot API sends no update when a member deletes a message
    shows_edits = True
    shows_deletes = True
    no_files = None

    def __init__(self, tg: Any) -> None:
        self.tg = tg
        self.people: dict[str, dict[str, Any]] = {}
        # the bridge's file messages that go with a post: one file per Telegram message,
        # the later ones captioned with the author alone
        self.with_post: dict[str, list[dict[str, Any]]] = {}

    def connector_options(self) -> dict[str, Any]:
        return {"token": self.tg.token, "api_url": self.tg.url, "poll_timeout": 2}

    def _person(self, name: str) -> dict[str, Any]:
        first, _, last = name.partition(" ")
        return self.people.setdefault(name, self.tg.user(first, last or None))

    async def say(self, text: str, author: str) -> str:
        return str(self.tg.say(GROUP, self._person(author), text))

    async def reply(self, to_native: str, text: str, author: str) -> str:
        return str(self.tg.say(GROUP, self._person(author), text, reply_to=int(to_native)))

    async def edit(self, native_id: str, text: str) -> None:
        self.tg.edit(GROUP, int(native_id), text)

    async def delete(self, native_id: str) -> None:
        raise AssertionError("Telegram tells bots nothing of deletions")

    async def wait_handed_over(self, native_id: str, timeout: float = 20) -> None:
        """Returns once a getUpdates answer carried the message to the bridge."""
        await self.tg.wait_handed_over(GROUP, int(native_id), timeout)

    async def say_with_files(self, text: str, author: str, files: list[PeerFile]) -> str:
        ids = self.tg.say_files(GROUP, self._person(author), text,
                                [(f.name, f.type, f.data) for f in files])
        return str(ids[0])

    async def files_of(self, post: conformance.Post) -> list[PeerFile]:
        # the files come one message each, about a second apart: read once none is new
        count, still = -1, 0.0
        while still < 3.0:
            self.posts()
            now = len(self.with_post.get(post.native_id, []))
            count, still = now, (still + 0.2 if now == count else 0.0)
            await asyncio.sleep(0.2)
        out = []
        for m in self.with_post.get(post.native_id, []):
            data = self.tg.file_of(m)
            if m.get("photo"):  # a photo has no name and no type of its own in Telegram
                out.append(PeerFile("", "image (photo)", data))
            else:
                out.append(PeerFile(m["document"]["file_name"], m["document"]["mime_type"],
                                    data))
        return out

    def posts(self) -> list[conformance.Post]:
        chat = self.tg.chats[GROUP]
        out: list[conformance.Post] = []
        self.with_post = {}
        for m in self.tg.bot_messages(GROUP):
            author, text = shown(m)
            has_file = any(k in m for k in ("photo", "document"))
            if has_file and not text and out and out[-1].author == author:
                self.with_post[out[-1].native_id].append(m)  # read as part of the post above
                continue
            self.with_post[str(m["message_id"])] = [m] if has_file else []
            earlier = [t.split(": ", 1)[-1] for t in chat.edits.get(m["message_id"], [])]
            reply = m.get("reply_to_message")
            out.append(conformance.Post(
                native_id=str(m["message_id"]), text=text, author=author,
                reply_to=str(reply["message_id"]) if reply else None, edits=earlier,
                deleted=m["message_id"] in chat.deleted, raw=m))
        return out

    def assert_inert(self, post: conformance.Post, hostile: str) -> None:
        message = post.raw
        # nothing is formatted but the author's name: no link, no bold, no mention came
        # out of the hostile text, and the HTML sent parses to exactly what is shown
        assert [(e["type"], e["offset"]) for e in message.get("entities", [])] == [("bold", 0)]
        assert parse_html(message["_html"])[0] == message["text"]
        shown_text = " ".join(f"{post.author} {post.text}".split())
        assert " ".join(hostile.split()) in shown_text
        assert "\n" not in post.author  # a name never spills onto a line of its own


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path, tg: Any) -> None:
    async with conformance.harness(tmp_path, TelegramGroup(tg)) as h:
        await scenario(h)
