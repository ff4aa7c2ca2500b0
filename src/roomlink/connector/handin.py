"""Handing one inbound event in durably: the duty every connector shares, written once.

A connector calls ``await ctx.hand_in(event)`` for each event, in the platform's order,
and moves the platform's cursor (Slack ack, Telegram offset, IMAP UID, sync token) past
the event only when it returned True:

- stored in every store of every pipe concerned: True;
- refused by the core as :class:`BadInput` (no retry will ever store it): one warning,
  and True, so that the cursor moves on and the room's next message is not held up;
- any other failure (a store down, a disk full): logged, retried with backoff for as
  long as it takes, since the cursor must wait for it;
- the daemon is shutting down: False at once; the connector stops handing in and
  leaves its cursor where it was, and the platform gives the event again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from roomlink.connector.pacing import backoff
from roomlink.errors import BadInput, ShuttingDown
from roomlink.message.model import Inbound

RETRY_INITIAL = 0.5  # seconds before the first retry of a store failure
RETRY_MAX = 30.0


async def hand_in(
    accept: Callable[[Inbound], Awaitable[list[str]]],
    event: Inbound,
    *,
    connector: str,
    log: logging.Logger,
) -> bool:
    """Store ``event`` through ``accept``; True when the cursor may move past it."""
    attempt = 0
    while True:
        try:
            await accept(event)
            return True
        except ShuttingDown:
            return False
        except BadInput as exc:
            log.warning("%s: skipping a message from %s that cannot be stored (%s)",
                        connector, event.room, exc)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            delay = backoff(attempt, RETRY_INITIAL, RETRY_MAX)
            log.error("%s: could not store a message from %s (%s); retrying in %.1fs",
                      connector, event.room, exc, delay)
            await asyncio.sleep(delay)
