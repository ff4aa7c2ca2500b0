"""The store's migration tooling: Alembic's migrations (no alembic.ini), and running them
for an engine that opens a store whose schema is not at the newest revision.

Importing Alembic (and SQLAlchemy) costs a daemon about 30 MiB and a good part of its
start-up, so a store whose schema is already at the newest revision is told so by a plain
version check (:func:`head_revision` reads the revision files themselves) and Alembic is
imported only when there is something to migrate, and then by a child process unless it
is loaded already (a CLI command, the tests): it would stay for the daemon's lifetime,
about 25 MiB of a first start's RSS for a schema that is then current (bench/README.md).
The engines call :func:`migrate_sqlite` and :func:`migrate_postgres`; nothing here knows
an engine.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
import weakref
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roomlink.store.errors import StoreError, describe
from roomlink.store.urls import connect_args, redact

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL

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


# -- running them ---------------------------------------------------------------------

_MIGRATION_LOCK = 0x726F6F6D6C696E6B  # "roomlink": serialises concurrent openers on PostgreSQL

# Alembic keeps its migration context in module globals, so two stores must not migrate at
# once in one process (threads or greenlets): opening is serialised per event loop.
_open_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def open_lock() -> asyncio.Lock:
    """The lock that serialises opening (and so migrating) stores on this event loop."""
    loop = asyncio.get_running_loop()
    lock = _open_locks.get(loop)
    if lock is None:
        lock = _open_locks[loop] = asyncio.Lock()
    return lock


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """What every connection to a SQLite store sets first (the engine's and Alembic's)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
    finally:
        cur.close()


class MigrationFailed(Exception):
    """The child process that migrates a store failed: its one-line reason."""


def child_main(migrate: Callable[[], None]) -> int:
    """A migrating child's body: the reason for a failure as one line on stderr (never a
    traceback full of SQL), and exit status 1."""
    try:
        migrate()
    except Exception as e:
        print(describe(e), file=sys.stderr)
        return 1
    return 0


async def _in_child(code: str, *args: str, stdin: bytes | None = None) -> None:
    """Run ``python -c code args`` (which migrates with Alembic and ends in child_main);
    its failure becomes MigrationFailed with the child's one line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await child.communicate(stdin)
    if child.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise MigrationFailed(lines[-1][:300] if lines else f"exit status {child.returncode}")


def _sqlite_migrate(path: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import URL

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    url = URL.create("sqlite+pysqlite", database=path)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "connect", sqlite_pragmas)
    try:
        with engine.begin() as conn:
            upgrade(conn)
    finally:
        engine.dispose()


def sqlite_child(path: str) -> int:
    """What the child process of :func:`migrate_sqlite` runs."""
    return child_main(lambda: _sqlite_migrate(path))


_SQLITE_CHILD = (
    "import sys; from roomlink.store.migrate import sqlite_child as m; sys.exit(m(sys.argv[1]))"
)


async def migrate_sqlite(path: str) -> None:
    """Create or upgrade the SQLite store at ``path``: in a child process, unless
    SQLAlchemy is loaded already."""
    if "sqlalchemy" in sys.modules:
        async with open_lock():
            await asyncio.to_thread(_sqlite_migrate, path)
        return
    await _in_child(_SQLITE_CHILD, path)


def pg_url(url: str) -> URL:
    """The store URL as SQLAlchemy's asyncpg dialect takes it."""
    from sqlalchemy.engine import make_url

    args = connect_args(url)
    try:
        u = make_url(args["dsn"])
    except Exception as e:
        raise StoreError(f"bad store URL {redact(url)!r}: {type(e).__name__}") from None
    return u.set(drivername="postgresql+asyncpg", username=args.get("user"),
                 password=args.get("password"))


def _pg_upgrade(conn: Connection) -> None:
    import sqlalchemy as sa

    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    upgrade(conn)


async def _pg_migrate_here(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        pg_url(url), pool_size=1, max_overflow=0, connect_args={"timeout": 10},
        hide_parameters=True,  # errors must never carry message content into logs
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_pg_upgrade)
    finally:
        await engine.dispose()


def postgres_child() -> int:
    """What the child process of :func:`migrate_postgres` runs, the URL read from stdin
    (never from its command line, which every user of the machine can read)."""
    url = sys.stdin.readline().rstrip("\n")
    return child_main(lambda: asyncio.run(_pg_migrate_here(url)))


_POSTGRES_CHILD = (
    "import sys; from roomlink.store.migrate import postgres_child as m; sys.exit(m())"
)


async def migrate_postgres(url: str) -> None:
    """Alembic's upgrade of the PostgreSQL store at ``url``, in a child process unless
    SQLAlchemy is loaded already."""
    if "sqlalchemy" in sys.modules:
        await _pg_migrate_here(url)
        return
    await _in_child(_POSTGRES_CHILD, stdin=url.encode() + b"\n")
