"""The optional admin HTTP server: status page, status JSON, metrics, health, operator actions.

It listens only where the config's ``admin.listen`` says (keep it on a private address):

- ``GET /`` the status page (HTML, no external assets; it refreshes from /api/status)
- ``GET /api/status`` JSON: connectors, one object per room of every pipe, stores, rates
- ``POST /api/outbox/retry`` put failed copies back in the queue
- ``POST /api/reload`` re-read the config file (what ``roomlink reload`` calls)
- ``GET /metrics`` Prometheus text format; ``GET /healthz`` JSON, never behind the token
- ``GET /files/{file_id}/{name}`` a kept file's bytes, as a download, never behind the
  token: the link a platform without files shows (a party's ``files_url``), whose
  unguessable id is the secret

With ``admin.token`` set, every other endpoint wants it, as
``Authorization: Bearer TOKEN`` or (for a browser) ``?token=TOKEN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from roomlink.admin.page import render_page
from roomlink.admin.reload import ReloadResult
from roomlink.admin.status import SAMPLE_EVERY, Rates, StatusSource, StoreReports, collect
from roomlink.config.models import AdminConfig
from roomlink.connector.httpserve import HttpServer, serve_file
from roomlink.message.filenames import clean_filename

log = logging.getLogger("roomlink.admin")

OPEN_PATHS = ("/healthz",)  # load balancers and HEALTHCHECKs probe it without a token
OPEN_PREFIXES = ("/files/",)  # downloads: the file's unguessable id is their secret
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminServer:
    """``source``: what the pages report; ``rescan``: have the delivery workers look again
    for copies put back in the queue; ``reload``: re-read the config file."""

    def __init__(self, config: AdminConfig, source: StatusSource, *,
                 rescan: Callable[[], Awaitable[None]],
                 reload: Callable[[], Awaitable[ReloadResult]]) -> None:
        self.source = source
        self._rescan = rescan
        self._reload_config = reload
        self.listen = config.listen
        self.token = config.token.get_secret_value() if config.token is not None else None
        self.rates = Rates()
        self.limits = config.http_limits()
        self._server: HttpServer | None = None
        self.reports = StoreReports()
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_post("/api/outbox/retry", self._retry)
        app.router.add_post("/api/reload", self._reload)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/files/{file_id}/{name}", self._file)
        self._server = HttpServer(app, self.listen, self.limits, "admin")
        await self._server.start()
        self._sampler = asyncio.create_task(self._sample_loop(), name="admin sampler")
        log.info("admin: status page at http://%s/%s, metrics at /metrics, health at /healthz",
                 self.listen, "?token=..." if self.token else "")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()

    async def _sample_loop(self) -> None:
        """Rates need samples, and a connector's down time its moment: sample often."""
        tick = 0
        while True:
            for name, connector in list(self.source.connectors.items()):
                with contextlib.suppress(Exception):
                    self.source.health.observe(name, connector.is_connected())
            if tick % int(SAMPLE_EVERY) == 0:
                self.rates.sample()
            tick += 1
            await asyncio.sleep(1.0)

    # -- the token ---------------------------------------------------------------------
    def authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        open_path = request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES)
        if not open_path and not self.authorized(request):
            message = "missing or wrong admin token: send Authorization: Bearer TOKEN, " \
                      "or add ?token=TOKEN to the address"
            if request.path == "/":
                return web.Response(status=401, text=message + "\n")
            return web.json_response({"error": message}, status=401)
        if request.method == "POST" and request.content_type != "application/json":
            # a cross-site form cannot send JSON without the browser asking first
            return web.json_response({"error": "send a JSON body"}, status=415)
        return await handler(request)

    # -- pages ---------------------------------------------------------------------------
    async def _page(self, _request: web.Request) -> web.Response:
        status = await collect(self.source, self.rates, self.reports)
        return web.Response(text=render_page(status), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def _status(self, _request: web.Request) -> web.Response:
        status = await collect(self.source, self.rates, self.reports)
        return web.json_response(status, headers={"Cache-Control": "no-store"})

    async def _retry(self, request: web.Request) -> web.Response:
        """``{"party": P, "connector"?: C, "room"?: R, "id"?: message id}``."""
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not valid JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        fields: dict[str, str | None] = {}
        for key in ("party", "connector", "room", "id"):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                return web.json_response({"error": f"'{key}' must be a string"}, status=400)
            fields[key] = value
        stores = self.source.stores
        parties = [fields["party"]] if fields["party"] else list(stores)
        unknown = [p for p in parties if p not in stores]
        if unknown:
            return web.json_response({"error": f"unknown party {unknown[0]!r}"}, status=404)
        retried = 0
        for party in parties:
            assert party is not None
            retried += await stores[party].retry_failed(
                fields["connector"], fields["room"], fields["id"]
            )
        await self._rescan()
        self.reports.invalidate()
        log.info("admin: %d failed cop%s put back in the queue", retried,
                 "y" if retried == 1 else "ies")
        return web.json_response({"retried": retried})

    async def _reload(self, _request: web.Request) -> web.Response:
        result = await self._reload_config()
        return web.json_response(result.as_json(), status=200 if result.ok else 422)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        """A kept file whose id one of the parties minted (ids are per party: each
        party's store is asked); 404 for any other id or a name that is not clean."""
        file_id, name = request.match_info["file_id"], request.match_info["name"]
        if clean_filename(name) == name:
            for store in list(self.source.stores.values()):
                sha256 = await store.file_by_id(file_id)
                if sha256 is not None and await store.files.has(sha256):
                    mime, _ = mimetypes.guess_type(name, strict=False)
                    return await serve_file(request, name, mime, None, store.files.read(sha256))
        return web.json_response({"error": "no such file"}, status=404)

    async def _health(self, _request: web.Request) -> web.Response:
        """Which rooms can take messages now, and each party's outbox by state."""
        source = self.source
        rooms: dict[str, dict[str, bool]] = {}
        for ref in sorted(source.workers):
            rooms.setdefault(ref.connector, {})[ref.room] = source.connectors[
                ref.connector
            ].is_ready(ref.room)
        stores: dict[str, Any] = {}
        for party, store in source.stores.items():
            try:
                stores[party] = await store.counts()
            except Exception as exc:  # the report must still answer
                stores[party] = {"error": str(exc)}
        ok = all("error" not in s for s in stores.values())
        return web.json_response(
            {"status": "ok" if ok else "degraded", "rooms": rooms, "stores": stores},
            status=200 if ok else 503,
        )
