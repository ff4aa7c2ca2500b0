"""Opening a party's store: the engine its URL names, connected and migrated."""

from __future__ import annotations

from roomlink.store import migrate, urls
from roomlink.store.contract import Store
from roomlink.store.errors import StoreError
from roomlink.store.sqlite.engine import SqliteStore


async def open_store(
    party: str, url: str, *, async_delivery_marks: bool = False, files: str | None = None
) -> Store:
    """Open (creating and migrating as needed) the store at ``url`` for ``party``.

    ``sqlite:///PATH`` or ``postgresql://user:pass@host:port/db`` (also ``postgres://``).
    Raises StoreError, whose text never contains the password, if it cannot be opened.
    ``async_delivery_marks`` (PostgreSQL only): commit delivery marks without waiting
    for the server's disk flush (see ``PostgresStore``). ``files``: a folder for the
    party's files (default: ``<database file>.files`` beside a SQLite store, the
    database itself for PostgreSQL).
    """
    scheme, target = urls.parse_url(url)
    try:
        if scheme == "sqlite":
            return await SqliteStore.open(party, url, target, files)
        async with migrate.open_lock():
            # asyncpg is imported only by a party whose store is on PostgreSQL
            from roomlink.store.postgres.engine import PostgresStore

            return await PostgresStore.open(party, url, async_delivery_marks, files)
    except StoreError:
        raise
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        for secret in sorted(urls.passwords(url), key=len, reverse=True):
            text = text.replace(secret, "***")
        raise StoreError(f"cannot open store {urls.redact(url)}: {text}") from None
