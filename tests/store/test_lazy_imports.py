"""A store opens without loading Alembic or SQLAlchemy into the process (about 25 MiB of
a daemon's memory): a current schema is told by a version check, and a new or older one
is migrated by a child process; a store that is behind is still migrated. A PostgreSQL
store then reads and writes on asyncpg alone."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg

from roomlink.store.migrate import alembic_config, head_revision
from store.conftest import pg_database


def test_head_revision_read_from_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_opening_a_sqlite_store_loads_no_alembic_even_when_it_migrates(tmp_path: Path) -> None:
    code = f"""
        import asyncio, sys
        from roomlink.store import open_store, NewMessage
        async def main():
            s = await open_store("a", "sqlite:///{tmp_path}/a.db")
            await s.close()
            print(sorted(m for m in ("alembic", "sqlalchemy") if m in sys.modules))
        asyncio.run(main())
    """
    assert run(code) == "[]"  # a new file is migrated, by a child process
    assert (tmp_path / "a.db").exists()
    assert run(code) == "[]"  # and the next start only checks the version
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)]


def test_a_file_that_is_no_database_fails_in_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a.db").write_text("these are somebody's notes, not a database\n")
    out = run(f"""
        import asyncio
        from roomlink.store import open_store
        async def main():
            try:
                await open_store("a", "sqlite:///{tmp_path}/a.db")
            except Exception as e:
                print(type(e).__name__, e)
        asyncio.run(main())
    """)
    assert out.startswith("StoreError cannot open store sqlite:///")
    assert out.endswith("file is not a database") and "\n" not in out
    assert (tmp_path / "a.db").read_text().startswith("these are somebody's notes")


def test_a_store_behind_the_newest_revision_is_migrated(tmp_path: Path) -> None:
    run(f"""
        import asyncio
        from roomlink.store import open_store
        async def main():
            await (await open_store("a", "sqlite:///{tmp_path}/a.db")).close()
        asyncio.run(main())
    """)
    with sqlite3.connect(tmp_path / "a.db") as db:  # as if written by an older roomlink
        db.execute("UPDATE alembic_version SET version_num = '0001'")
        db.execute("ALTER TABLE messages RENAME TO old_messages")
    out = run(f"""
        import asyncio, sqlite3
        from roomlink.store import open_store
        async def main():
            try:
                await open_store("a", "sqlite:///{tmp_path}/a.db")
            except Exception as e:
                print(type(e).__name__)
        asyncio.run(main())
    """)
    assert out == "StoreError"  # Alembic ran 0001 -> head, and the missing table stopped it


PG_WORK = """
    import asyncio, sys
    from roomlink.message.model import RoomRef
    from datetime import UTC, datetime
    from roomlink.message.model import Author, Message
    from roomlink.store import open_store, NewMessage
    def msg(i):
        return Message(id=i, pipe="p", origin_connector="api", origin_room="r",
                       origin_native_id="o-" + i, author=Author(name="a", party="x",
                       platform="api"), text="hello", ts=datetime.now(UTC))
    async def main():
        s = await open_store("a", sys.argv[1])
        room = RoomRef(connector="irc", room="#x")
        [[row]] = await s.append([NewMessage(msg("m1"), (room,))])
        assert [r.id for r in await s.pending("irc", "#x")] == [row.id]
        await s.mark_delivered(row.id, ["n1"])
        assert await s.native_id("m1", "irc", "#x") == "n1"
        assert await s.message_id_for_native("irc", "#x", "n1") == "m1"
        await s.set_cursor("irc", "k", "v")
        counts = await s.counts()
        heads = await s.chain_heads()  # what the status page shows
        await s.close()
        print(counts["delivered"], len(heads),
              sorted(m for m in ("alembic", "sqlalchemy") if m in sys.modules))
    asyncio.run(main())
"""


async def test_a_postgresql_store_works_without_sqlalchemy_even_when_it_migrates() -> None:
    """Its reads and writes run on asyncpg; a new database is migrated by a child."""
    async with pg_database() as url:
        assert run(PG_WORK, url) == "1 1 []"
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
            await conn.execute("DELETE FROM outbox; DELETE FROM cursors; DELETE FROM messages")
        finally:
            await conn.close()
        assert run(PG_WORK, url) == "1 1 []"  # current: a version check only


async def test_a_postgresql_store_that_fails_to_migrate_says_why_in_one_line() -> None:
    async with pg_database() as url:
        conn = await asyncpg.connect(url)
        try:  # as if written by an older roomlink, then damaged by hand
            await conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
                               "INSERT INTO alembic_version VALUES ('0001')")
        finally:
            await conn.close()
        out = run("""
            import asyncio, sys
            from roomlink.store import open_store
            async def main():
                try:
                    await open_store("a", sys.argv[1])
                except Exception as e:
                    print(type(e).__name__, e)
            asyncio.run(main())
        """, url)
        assert out.startswith("StoreError cannot open store postgresql://"), out
        assert "MigrationFailed" in out and "\n" not in out
