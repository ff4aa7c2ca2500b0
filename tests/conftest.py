"""Shared fixtures. The end-to-end kit lives in rlkit.py (on pythonpath via pyproject).

The suite runs in parallel (pytest-xdist, ``--dist loadgroup``; see scripts/test). Tests
that share an expensive fixture must run in one worker, or each worker would build it
again: ``pytest_collection_modifyitems`` below puts them in one xdist group.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _shared_scope(item: pytest.Item) -> str | None:
    """The group of a test that uses a fixture wider than one test: the module for a
    module-scoped fixture, the folder of the conftest for a session-scoped one (one Synapse
    for all the Matrix tests); None for a test that shares nothing."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    group: str | None = None
    for defs in info.name2fixturedefs.values():
        fixture = defs[-1]
        if fixture.scope in ("session", "package"):
            if fixture.baseid:  # defined in a conftest below tests/: that folder's tests
                return fixture.baseid
        elif fixture.scope in ("module", "class"):
            group = item.nodeid.split("::")[0]
    return group


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        group = _shared_scope(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
