"""The connector conformance kit (tests/conformance.py) against the Bot API test server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tgkit import GROUP, GROUP_ROOM, parse_html, shown

import conformance


class TelegramGroup(conformance.PeerRoom):
    """The test server's group as its members see it."""

    room = GROUP_ROOM
    connector_type = "telegram"
    can_edit = True
    can_delete = False  # the Bot API sends no update when a member deletes a message
    shows_edits = True
    shows_deletes = True

    def __init__(self, tg: Any) -> None:
        self.tg = tg
        self.people: dict[str, dict[str, Any]] = {}

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

    def posts(self) -> list[conformance.Post]:
        chat = self.tg.chats[GROUP]
        out = []
        for m in self.tg.bot_messages(GROUP):
            author, text = shown(m)
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
