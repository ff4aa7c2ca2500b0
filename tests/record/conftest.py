"""One conversation through the real ``roomlink`` process, shared by the record's tests.

Three parties on pipe ``project`` (agency, acme, contractor) and two on ``side`` (agency,
acme), with a reply, an edit, a delete, English and Russian text, and a restart in the
middle. agency's store is on the real PostgreSQL server, the others on SQLite: their
chains must agree all the same. Tests that change the stores work on a copy
(``copy_of``; a PostgreSQL copy is a new database made from the first as a template).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from rlkit import Room, free_port, running, write_config

PARTIES = ("agency", "acme", "contractor")
PG = "postgresql://postgres@127.0.0.1:5432"
_made: list[str] = []  # PostgreSQL databases to drop at the end


def _pg(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(f"{PG}/test", timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def new_pg_database(template: str | None = None) -> str:
    name = f"rl_record_{secrets.token_hex(5)}"
    _pg(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    _made.append(name)
    return name


@dataclass
class Conversation:
    dir: Path
    config: Path
    ids: dict[str, str]
    ports: dict[str, int]
    agency_db: str  # agency's PostgreSQL database

    def copy_of(self, dest: Path) -> Conversation:
        shutil.copytree(self.dir, dest, ignore=shutil.ignore_patterns("*.log"))
        copy = Conversation(dest, dest / self.config.name, self.ids, self.ports,
                            new_pg_database(template=self.agency_db))
        write_config(copy.config, copy.config_dict())
        return copy

    def config_dict(self, **party_extra: dict[str, Any]) -> dict[str, Any]:
        return config_dict(self.ports, self.agency_db, **party_extra)

    def db(self, party: str) -> Path:
        return self.dir / f"{party}.db"

    def sql(self, party: str, *statements: str) -> None:
        conn = sqlite3.connect(self.db(party), isolation_level=None)
        try:
            for s in statements:
                conn.execute(s)
        finally:
            conn.close()


def config_dict(ports: dict[str, int], agency_db: str, **party_extra: dict[str, Any]
                ) -> dict[str, Any]:
    stores = {p: f"sqlite:///{p}.db" for p in PARTIES} | {"agency": f"{PG}/{agency_db}"}
    return {
        "parties": {p: {"store": stores[p], **party_extra.get(p, {})} for p in PARTIES},
        "connectors": {
            f"{p}-api": {"party": p, "type": "api", "listen": f"127.0.0.1:{ports[p]}"}
            for p in PARTIES
        },
        "pipes": {
            "project": {"rooms": [{"connector": f"{p}-api", "room": "lobby"} for p in PARTIES]},
            "side": {"rooms": [{"connector": f"{p}-api", "room": "side"}
                               for p in ("agency", "acme")]},
        },
    }


_PENDING = "SELECT count(*) FROM outbox WHERE state = 'pending'"


async def _pending(dir: Path, agency_db: str) -> int:
    total = 0
    for p in PARTIES[1:]:
        conn = sqlite3.connect(dir / f"{p}.db")
        try:
            total += conn.execute(_PENDING).fetchone()[0]
        finally:
            conn.close()
    pg = await asyncpg.connect(f"{PG}/{agency_db}", timeout=10)
    try:
        total += await pg.fetchval(_PENDING)
    finally:
        await pg.close()
    return int(total)


async def _delivered(dir: Path, agency_db: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while await _pending(dir, agency_db):
        assert time.monotonic() < deadline, "deliveries still pending"
        await asyncio.sleep(0.05)


async def _send(http: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any]
                ) -> str:
    async with http.request(method, url, json=body) as resp:
        answer = await resp.json()
        assert resp.status == 202, answer
        return str(answer["id"])


async def converse(dir: Path, agency_db: str) -> Conversation:
    ports = {p: free_port() for p in PARTIES}
    path = write_config(dir / "roomlink.yaml", config_dict(ports, agency_db))
    base = {p: f"http://127.0.0.1:{ports[p]}/v1/rooms" for p in PARTIES}
    ids: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        rooms = [Room(http, ports[p], r) for p in PARTIES for r in ("lobby", "side")
                 if (p, r) != ("contractor", "side")]
        streams = [r.stream() for r in rooms]
        for phase in (1, 2):
            async with running(path, list(ports.values())) as daemon:
                for s in streams:
                    await s.__aenter__()
                if phase == 1:
                    ids["hello"] = await _send(http, "POST", f"{base['agency']}/lobby/messages", {
                        "text": "Hello from the agency <script>alert(1)</script> & co",
                        "author": "alice"})
                    ids["ru"] = await _send(http, "POST", f"{base['acme']}/lobby/messages", {
                        "text": "Договор ПОДПИСАН вчера вечером", "author": "boris"})
                    ids["reply"] = await _send(
                        http, "POST", f"{base['contractor']}/lobby/messages",
                        {"text": "Great, the contract is signed", "author": "carol",
                         "reply_to": ids["ru"]})
                    ids["side"] = await _send(http, "POST", f"{base['agency']}/side/messages", {
                        "text": "side channel: the contract budget, не для подрядчика",
                        "author": "alice"})
                else:
                    ids["edit"] = await _send(
                        http, "PATCH", f"{base['agency']}/lobby/messages/{ids['hello']}",
                        {"text": "Hello from the agency (edited)", "author": "alice"})
                    ids["after"] = await _send(
                        http, "POST", f"{base['contractor']}/lobby/messages",
                        {"text": "After the restart: the **invoice** is `attached`",
                         "author": "carol"})
                    ids["delete"] = await _send(
                        http, "DELETE", f"{base['acme']}/lobby/messages/{ids['ru']}",
                        {"author": "boris"})
                    ids["last"] = await _send(http, "POST", f"{base['acme']}/lobby/messages", {
                        "text": "ещё одно сообщение", "author": "boris"})
                await _delivered(dir, agency_db)
                for s in streams:
                    await s.__aexit__(None, None, None)
                assert daemon.terminate() == 0, daemon.log()
    return Conversation(dir, path, ids, ports, agency_db)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conversation]:
    try:
        yield asyncio.run(converse(tmp_path_factory.mktemp("conversation"), new_pg_database()))
    finally:
        while _made:
            _pg(f'DROP DATABASE IF EXISTS "{_made.pop()}" WITH (FORCE)')
