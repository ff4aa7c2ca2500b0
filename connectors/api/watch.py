"""Print a room's stream: ``python -m roomlink_connectors.api.watch URL [--token T]``.

URL is the room's stream, e.g. http://127.0.0.1:8082/v1/rooms/lobby/stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp


async def watch(url: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        print(f"watching {url} (Ctrl-C to stop)", flush=True)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                print(f"[{frame['pipe']}] {frame['display_name']}: {frame['text']}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--token")
    args = p.parse_args()
    try:
        asyncio.run(watch(args.url, args.token))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
