"""Test kit for the Telegram connector: the Bot API test server, a roomlink config linking
a Telegram group with an API room, and how a group member reads what the bridge posted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit import free_port, load_beside, write_config

server = load_beside(__file__, "server", "roomlink_tests_telegram_server")
media = load_beside(__file__, "tgmedia", "tgmedia")
BotApiServer = server.BotApiServer
parse_html = server.parse_html
utf16_slice = server.utf16_slice

GROUP = -1001234567890
GROUP_ROOM = str(GROUP)


def config(tmp_path: Path, tg: Any, rooms: list[str] | None = None,
           delivery: dict[str, Any] | None = None, **options: Any) -> tuple[Path, int]:
    """agency's Telegram bot in ``rooms`` (default: the group), each linked with an API
    room of acme ("lobby" for the first); returns the config path and the API port."""
    port = free_port()
    rooms = rooms or [GROUP_ROOM]
    pipes = {
        f"p{i}": {"rooms": [{"connector": "agency-tg", "room": room},
                            {"connector": "acme-api", "room": "lobby" if i == 0 else f"r{i}"}],
                  **({"join_part": True} if i == 0 else {})}
        for i, room in enumerate(rooms)
    }
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {
            "agency-tg": {"party": "agency", "type": "telegram", "token": "${TG_TOKEN}",
                          "api_url": tg.url, "poll_timeout": 2, **options},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{port}"},
        },
        "pipes": pipes,
        "delivery": {"backoff_initial": 0.1, "backoff_max": 1.0, "shutdown_grace": 3.0,
                     **(delivery or {})},
    })
    return path, port


def env(tg: Any) -> dict[str, str]:
    return {"TG_TOKEN": tg.token}


def shown(message: dict[str, Any]) -> tuple[str, str]:
    """(author, text) as a group member reads a bridge post: the bold name at the start,
    then the text (or the caption, under a file)."""
    text: str = message.get("text", message.get("caption", ""))
    entities = message.get("entities", message.get("caption_entities", []))
    first = entities[0] if entities else None
    if first is None or first["type"] != "bold" or first["offset"] != 0:
        return "", text
    author = utf16_slice(text, 0, first["length"])
    rest = text[len(author):]
    for sep in (": ", " "):
        if rest.startswith(sep):
            rest = rest[len(sep):]
            break
    return author, rest


async def wait_until(check: Callable[[], bool], timeout: float = 30,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def bot_posts(tg: Any, chat: int, count: int, timeout: float = 30
                    ) -> list[dict[str, Any]]:
    await wait_until(lambda: len(tg.bot_messages(chat)) >= count, timeout,
                     f"{count} bot posts in {chat} (have {len(tg.bot_messages(chat))})")
    return list(tg.bot_messages(chat))
