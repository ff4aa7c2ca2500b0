"""Alembic environment: the caller always passes an open sync connection.

``Store.open`` runs ``upgrade head`` itself (see ``roomlink.store.migrate``); there is no
alembic.ini. To write a new revision by hand, copy ``versions/0001_initial.py``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from roomlink.store.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("roomlink migrations need config.attributes['connection']")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
