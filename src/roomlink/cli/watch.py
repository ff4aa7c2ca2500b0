"""``roomlink watch URL``: print an API room's stream, one line per message.

URL is the room's stream, e.g. http://127.0.0.1:8082/v1/rooms/lobby/stream. With
``--after ID`` the daemon first replays what the room received after that message.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp


async def watch(url: str, token: str | None, after: str | None = None) -> int:
    """Print frames until the stream ends; 0 if the daemon closed it normally, else 1."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"after": after} if after else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers, params=params)
        except aiohttp.WSServerHandshakeError as exc:
            print(f"cannot watch {url}: HTTP {exc.status} {exc.message}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as exc:
            print(f"cannot watch {url}: {exc}", file=sys.stderr)
            return 1
        async with ws:
            print(f"watching {url} (Ctrl-C to stop)", flush=True)
            last, reason = None, ""
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    last = frame.get("id", last)
                    print(f"[{frame['pipe']}] {frame['display_name']}: {frame['text']}",
                          flush=True)
                elif msg.type == aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            code = ws.close_code
            if code not in (None, 1000, 1001):
                hint = f"; resume with --after {last}" if last else ""
                print(f"stream closed by the daemon: {code} {reason}{hint}", file=sys.stderr)
                return 1
    return 0


def run(url: str, token: str | None, after: str | None) -> int:
    try:
        return asyncio.run(watch(url, token, after))
    except KeyboardInterrupt:
        return 0
