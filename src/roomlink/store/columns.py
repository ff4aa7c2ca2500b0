"""The columns both engines select (``sqlite.queries``, ``postgres.queries``), and the
values made from them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from roomlink.message.model import Attachment, Author, Kind, Message
from roomlink.store.values import RecordRow

COLUMNS = (
    "id, pipe, kind, origin_connector, origin_room, origin_native_id, author_name, "
    "author_id, author_party, author_platform, text, attachments, reply_to, target, ts"
)
# the same, of a ``messages m`` in a join
M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))
# a RecordRow's, in its order
RECORD_COLUMNS = f"seq, {COLUMNS}, chain, chain_n"


def message(r: Sequence[Any], ts: datetime) -> Message:
    """A message from the 15 columns of ``COLUMNS``, in order; ``ts`` is the last one as
    a timezone-aware datetime (each driver returns it in its own form)."""
    attachments = tuple(Attachment(**x) for x in json.loads(r[11])) if r[11] != "[]" else ()
    return Message.model_construct(
        id=r[0], pipe=r[1], kind=Kind(r[2]), origin_connector=r[3], origin_room=r[4],
        origin_native_id=r[5],
        author=Author.model_construct(name=r[6], id=r[7], party=r[8], platform=r[9]),
        text=r[10], attachments=attachments, reply_to=r[12], target=r[13], ts=ts,
    )  # fmt: skip


def record_row(r: Sequence[Any], ts: datetime) -> RecordRow:
    """A RecordRow from the 18 columns of ``RECORD_COLUMNS``; ``ts`` as in :func:`message`."""
    return RecordRow(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
        r[13], r[14], ts, r[16], r[17],
    )  # fmt: skip

