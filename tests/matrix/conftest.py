"""Fixtures for the Matrix connector tests: one real Synapse for the session, and per test
a fresh room (its owner, the bot's account) behind a /sync-recording proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from mxpeer import MatrixPeer
from synapsekit import Synapse, SyncProxy


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def proxy(synapse: Synapse) -> AsyncIterator[SyncProxy]:
    server = SyncProxy(synapse.url)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def matrix_room(http: aiohttp.ClientSession, synapse: Synapse, proxy: SyncProxy,
                      tmp_path: Path) -> AsyncIterator[MatrixPeer]:
    peer = MatrixPeer(http, synapse.url, proxy, tmp_path / "keys")
    await peer.setup()
    try:
        yield peer
    finally:
        await peer.close()
