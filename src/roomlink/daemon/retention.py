"""The daemon's retention job: a periodic pass over every party that has
``retention_days``, cutting its record through ``roomlink.record.retention``; the other
parties' passes remove only the files no message refers to (one a ``kill -9`` left
without its message)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from roomlink.record.retention import Tampered, apply, remove_unreferenced
from roomlink.store import Store

log = logging.getLogger("roomlink.record.retention")

INTERVAL = 3600.0  # seconds between passes


class RetentionJob:
    """The daemon's periodic pass over every party that has ``retention_days``."""

    def __init__(self, stores: Mapping[str, Store], days: Mapping[str, int | None]) -> None:
        self.targets = {p: (stores[p], d) for p, d in days.items() if d}
        self.file_sweeps = {p: stores[p] for p, d in days.items() if not d and p in stores}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.targets or self.file_sweeps:
            self._task = asyncio.create_task(self._loop(), name="roomlink-retention")

    async def _loop(self) -> None:
        while True:
            for party, (store, days) in self.targets.items():
                try:
                    removed = await apply(store, days)
                except Tampered as e:
                    log.error("retention for party %s stopped: %s", party, e)
                    continue
                except Exception as e:  # the next pass tries again
                    log.warning("retention for party %s failed: %s", party, e)
                    continue
                for pipe, n in removed.items():
                    log.info("retention: party %s, pipe %s: removed %d records older than "
                             "%d days (anchor kept)", party, pipe, n, days)
            for party, store in self.file_sweeps.items():
                try:
                    files = await remove_unreferenced(store)
                except Exception as e:  # the next pass tries again
                    log.warning("removing party %s's unreferenced files failed: %s", party, e)
                    continue
                if files:
                    log.info("party %s: removed %d files no message refers to", party, files)
            await asyncio.sleep(INTERVAL)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
