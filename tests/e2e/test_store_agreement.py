"""Issue 7, item 1, against the real daemon: agency on SQLite, acme on the real
PostgreSQL. Text PostgreSQL cannot hold is cleaned (202, never 503), a message one store
refuses fails alone, and afterwards both exports hold the same messages in the same order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from rlkit import export, free_port, running, write_config
from store.conftest import pg_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


async def test_bad_text_is_cleaned_and_a_refused_message_fails_alone(
    tmp_path: Path, pg_url: str
) -> None:
    agency, acme = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"}, "acme": {"store": pg_url}},
        "connectors": {
            "agency-api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{agency}"},
            "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{acme}"},
        },
        "pipes": {"demo": {"rooms": [{"connector": "agency-api", "room": "lobby"},
                                     {"connector": "acme-api", "room": "lobby"}]}},
    })  # fmt: skip
    url = f"http://127.0.0.1:{agency}/v1/rooms/lobby/messages"
    async with running(path, [agency, acme]) as daemon:
        async with aiohttp.ClientSession() as session:

            async def post(raw: str) -> int:
                async with session.post(url, data=raw.encode(),
                                        headers={"Content-Type": "application/json"}) as resp:
                    assert resp.content_type == "application/json"
                    return resp.status

            # JSON escapes as a client sends them: NUL, a lone surrogate, in text and name
            assert await post('{"author": "a\\u0000b", "text": "x\\u0000y"}') == 202
            assert await post('{"author": "\\ud800", "text": "lone \\ud800"}') == 202
            # now acme's database refuses one message for real; it races 300 others
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute("ALTER TABLE messages ADD CONSTRAINT refuse_marked "
                                   "CHECK (position('MARKED' in text) = 0)")
            finally:
                await conn.close()
            bodies = [f'{{"author": "bob", "text": "innocent {i}"}}' for i in range(300)]
            bodies.insert(150, '{"author": "eve", "text": "MARKED"}')
            statuses = await asyncio.gather(*(post(b) for b in bodies))
        assert statuses.pop(150) == 503
        assert statuses == [202] * 300
        assert daemon.terminate() == 0
    log = daemon.log()
    assert "innocent" not in log and "MARKED" not in log and "Traceback" not in log
    records = {party: export(path, party) for party in ("agency", "acme")}
    assert [m["id"] for m in records["agency"]] == [m["id"] for m in records["acme"]]
    assert len(records["acme"]) == 302
    first, second = records["acme"][:2]
    assert (first["author"]["name"], first["text"]) == ("a\ufffdb", "x\ufffdy")
    assert (second["author"]["name"], second["text"]) == ("\ufffd", "lone \ufffd")
    assert all("MARKED" not in m["text"] for m in records["agency"])
