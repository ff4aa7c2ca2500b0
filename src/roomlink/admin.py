"""The optional admin HTTP server: Prometheus metrics and a health report for ops.

It listens only where the config's ``admin.listen`` says (keep it on a private address):
``GET /metrics`` (Prometheus text format) and ``GET /healthz`` (JSON).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from roomlink.app import Daemon

log = logging.getLogger("roomlink.admin")


class AdminServer:
    def __init__(self, daemon: Daemon, listen: str) -> None:
        self.daemon = daemon
        self.listen = listen
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, _, port = self.listen.rpartition(":")
        await web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_address=True).start()
        log.info("admin: metrics at http://%s/metrics, health at http://%s/healthz",
                 self.listen, self.listen)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, _request: web.Request) -> web.Response:
        """Which rooms can take messages now, and each party's outbox by state."""
        daemon = self.daemon
        rooms: dict[str, dict[str, bool]] = {}
        for ref in sorted(daemon.workers):
            rooms.setdefault(ref.connector, {})[ref.room] = daemon.connectors[
                ref.connector
            ].is_ready(ref.room)
        stores: dict[str, Any] = {}
        for party, store in daemon.stores.items():
            try:
                stores[party] = await store.counts()
            except Exception as exc:  # the report must still answer
                stores[party] = {"error": str(exc)}
        ok = all("error" not in s for s in stores.values())
        return web.json_response(
            {"status": "ok" if ok else "degraded", "rooms": rooms, "stores": stores},
            status=200 if ok else 503,
        )
