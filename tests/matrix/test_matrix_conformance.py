"""The connector conformance kit (tests/conformance.py) against a real Synapse."""

from __future__ import annotations

from pathlib import Path

import pytest
from mxpeer import MatrixPeer

import conformance


@pytest.mark.parametrize("scenario", conformance.ALL, ids=lambda s: s.__name__)
async def test_conformance(scenario: conformance.Scenario, tmp_path: Path,
                           matrix_room: MatrixPeer) -> None:
    async with conformance.harness(tmp_path, matrix_room) as h:
        await scenario(h)
