"""Run the store's Alembic migrations on an open sync connection (no alembic.ini).

Importing Alembic (and SQLAlchemy) costs a daemon about 30 MiB and a good part of its
start-up, so a store whose schema is already at the newest revision is told so by a plain
version check (:func:`head_revision` reads the revision files themselves) and Alembic is
imported only when there is something to migrate.
"""

from __future__ import annotations

import re
import sqlite3
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"

_REVISION = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(?:['\"]([^'\"]+)['\"]|None)", re.M)


@cache
def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``; None when that is not one plain
    chain this reader understands (then Alembic decides)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (SCRIPT_LOCATION / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev is None:
            continue
        if down is None:
            return None
        revisions.add(rev[1])
        if down[1]:
            downs.add(down[1])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _at_head(versions: list[str]) -> bool:
    """Whether alembic_version's rows say the newest revision (and only it)."""
    head = head_revision()
    return head is not None and versions == [head]


def sqlite_is_current(path: str) -> bool:
    """Whether the SQLite file at ``path`` exists with its schema at the newest revision."""
    if head_revision() is None or not Path(path).exists():
        return False
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return _at_head([r[0] for r in rows])


async def pg_is_current(conn: Any) -> bool:
    """The same for the PostgreSQL database behind an asyncpg connection."""
    if head_revision() is None or not await conn.fetchval(
        "SELECT to_regclass('alembic_version') IS NOT NULL"
    ):
        return False
    return _at_head([r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")])


def is_current(connection: Connection) -> bool:
    """Whether the store behind this SQLAlchemy connection is at the newest revision."""
    import sqlalchemy as sa

    if head_revision() is None:
        return False
    if connection.dialect.name == "postgresql":
        exists = connection.scalar(sa.text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    else:
        exists = connection.scalar(
            sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'")
        )
    if not exists:
        return False
    rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return _at_head([r[0] for r in rows])


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection) -> None:
    """``alembic upgrade head`` inside the caller's transaction; a no-op when up to date
    (and then without importing Alembic)."""
    if is_current(connection):
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
