"""``roomlink watch URL``: print an API room's stream, one line per frame.

URL is the room's stream, e.g. http://127.0.0.1:8082/v1/rooms/lobby/stream. With
``--after ID`` the daemon first replays what the room received after that message.
Each line says what happened (a message, an action, an edit or a delete of an earlier
message, a reply, a join, a part, a topic) and ends with the message's id, so that an
edit or a reply can be matched with what it names. When the daemon closes the stream,
the id to resume from is printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

EXAMPLE = "http://127.0.0.1:8082/v1/rooms/lobby/stream"


def describe(frame: dict[str, Any]) -> str:
    """One line for one stream frame, as a person reads it."""
    pipe, name = frame.get("pipe", "?"), frame.get("display_name", "?")
    text, kind = frame.get("text", ""), frame.get("kind", "message")
    target, reply_to = frame.get("target"), frame.get("reply_to")
    if kind == "edit":
        line = f"{name} edited {target}: {text}"
    elif kind == "delete":
        line = f"{name} deleted {target}"
    elif kind == "action":
        line = f"* {name} {text}"
    elif kind in ("join", "part"):
        line = f"{name} {'joined' if kind == 'join' else 'left'}"
    elif kind == "topic":
        line = f"{name} set the topic: {text}"
    else:
        line = f"{name}: {text}"
    if reply_to:
        line += f"  (reply to {reply_to})"
    if frame.get("parts", 1) > 1:
        line += f"  (part {frame.get('part')} of {frame['parts']})"
    return f"[{pipe}] {line}  [{frame.get('id', '?')}]"


def _usable(url: str) -> str | None:
    """Why ``url`` cannot be a stream's address, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        return f"give the room's stream as a full URL, e.g. {EXAMPLE}"
    return None


async def watch(url: str, token: str | None, after: str | None = None) -> int:
    """Print frames until the stream ends; 0 if the daemon closed it normally, else 1."""
    problem = _usable(url)
    if problem:
        print(f"cannot watch {url!r}: {problem}", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"after": after} if after else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers, params=params)
        except aiohttp.WSServerHandshakeError as exc:
            print(f"cannot watch {url}: HTTP {exc.status} {exc.message}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as exc:
            print(f"cannot watch {url}: {exc or type(exc).__name__}", file=sys.stderr)
            return 1
        async with ws:
            print(f"watching {url} (Ctrl-C to stop)", flush=True)
            last, reason = after, ""
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    last = frame.get("id", last)
                    print(describe(frame), flush=True)
                elif msg.type == aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            code = ws.close_code
            hint = f"; resume with --after {last}" if last else ""
            why = f"{code} {reason}".strip() if code is not None else "connection lost"
            print(f"stream closed by the daemon: {why}{hint}", file=sys.stderr)
            return 0 if code in (1000, 1001) else 1


def run(url: str, token: str | None, after: str | None) -> int:
    try:
        return asyncio.run(watch(url, token, after))
    except KeyboardInterrupt:
        return 0
