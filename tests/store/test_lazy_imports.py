"""A store whose schema is current opens without Alembic or SQLAlchemy (about 30 MiB of a
daemon's memory); a store that is behind is still migrated."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from roomlink.store.migrate import alembic_config, head_revision


def test_head_revision_read_from_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_second_open_of_a_sqlite_store_loads_no_alembic(tmp_path: Path) -> None:
    code = f"""
        import asyncio, sys
        from roomlink.store import open_store, RecordEntry
        async def main():
            s = await open_store("a", "sqlite:///{tmp_path}/a.db")
            await s.close()
            print(sorted(m for m in ("alembic", "sqlalchemy") if m in sys.modules))
        asyncio.run(main())
    """
    assert run(code) == "['alembic', 'sqlalchemy']"  # a new file is migrated
    assert run(code) == "[]"  # and the next start only checks the version


def test_a_store_behind_the_newest_revision_is_migrated(tmp_path: Path) -> None:
    import sqlite3

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
