"""The store's errors, and the one-line text every engine gives a driver's failure."""

from __future__ import annotations

import re
import sys


class StoreError(Exception):
    """A store could not be opened, or an operation on it failed."""


class UnknownOutboxRow(StoreError, LookupError):
    """An outbox row id that is not in this store."""


def describe(e: BaseException) -> str:
    """What went wrong, for logs and errors: the driver's first line, never the SQL
    parameters (other people's messages and names) that SQLAlchemy adds to its text."""
    sa = sys.modules.get("sqlalchemy")  # not loaded: then no error can be one of its own
    statement_error = sa.exc.StatementError if sa is not None else ()
    orig = e.orig if isinstance(e, statement_error) else None
    inner: BaseException = orig if isinstance(orig, BaseException) else e
    if isinstance(inner, statement_error):
        text = str(inner.args[0]) if inner.args else ""  # the message alone, no SQL
    else:
        text = str(inner)
    first = text.strip().splitlines()[0] if text.strip() else ""
    # asyncpg quotes the offending value after the argument's number: keep the number only
    first = re.sub(r"^(invalid input for query argument \$\d+).*", r"\1", first)
    return f"{type(inner).__name__}: {first[:200]}"


def wrap(e: BaseException, errors: tuple[type[BaseException], ...]) -> BaseException:
    """A driver's error (one of ``errors``) as a StoreError that says what it was;
    anything else as it is."""
    if isinstance(e, errors):
        err = StoreError(describe(e))
        err.__cause__ = e
        return err
    return e


class LeaseLost(StoreError):
    """A write for a connector this replica no longer holds the lease of (cluster mode):
    another replica may run it now, so this one must not write or deliver for it."""


class HeadMoved(StoreError):
    """A conditional append (replicas: ``Store.start_append_at``) found a pipe's chain
    head no longer where the writer read it: another writer appended (or took back) in
    between, so this append would chain the pipe differently in this store."""
