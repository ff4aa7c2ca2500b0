"""A real Synapse for the Matrix tests, and a small client-server API client for its users.

Synapse (PyPI ``matrix-synapse``) lives in its own venv, ``.venv-synapse`` at the repo's
root (scripts/test installs it). :class:`Synapse` writes a config into a temp folder
(SQLite, no federation, rate limits relaxed, the gotchas of the peers' recipe solved),
starts it on a free port of 127.0.0.1 and stops it by PID. :class:`SyncProxy` sits between
roomlink and Synapse and remembers what each ``/sync`` answer carried, so a test can tell
when an event was handed over to the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from rlkit import ROOT, free_port

SYNAPSE_PY = ROOT / ".venv-synapse" / "bin" / "python"
PASSWORD = "secret-pass"  # every test account's
SHARED_SECRET = "test-registration-secret"

CONFIG = """\
server_name: "localhost"
pid_file: {work}/homeserver.pid
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {work}/homeserver.db
log_config: {work}/log.config
media_store_path: {work}/media_store
signing_key_path: {work}/localhost.signing.key
registration_shared_secret: "{secret}"
enable_registration: true
enable_registration_without_verification: true
report_stats: false
macaroon_secret_key: "test-macaroon-secret"
form_secret: "test-form-secret"
trusted_key_servers: []
suppress_key_server_warning: true
url_preview_enabled: false
max_upload_size: 2M
federation_domain_whitelist: []
presence:
  enabled: false
rc_message: {{per_second: 10000, burst_count: 10000}}
rc_registration: {{per_second: 10000, burst_count: 10000}}
rc_login:
  address: {{per_second: 10000, burst_count: 10000}}
  account: {{per_second: 10000, burst_count: 10000}}
  failed_attempts: {{per_second: 10000, burst_count: 10000}}
rc_joins:
  local: {{per_second: 10000, burst_count: 10000}}
  remote: {{per_second: 10000, burst_count: 10000}}
rc_invites:
  per_room: {{per_second: 10000, burst_count: 10000}}
  per_user: {{per_second: 10000, burst_count: 10000}}
"""

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {work}/homeserver.log
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


class Synapse:
    """One Synapse on 127.0.0.1:``port`` with its state in ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        work.mkdir(parents=True, exist_ok=True)
        (work / "homeserver.yaml").write_text(CONFIG.format(work=work, port=self.port,
                                                           secret=SHARED_SECRET))
        (work / "log.config").write_text(LOG_CONFIG.format(work=work))

    def start(self, timeout: float = 60) -> None:
        if not SYNAPSE_PY.exists():
            raise RuntimeError(f"{SYNAPSE_PY} is missing: scripts/test installs Synapse there")
        config = str(self.work / "homeserver.yaml")
        if not (self.work / "localhost.signing.key").exists():
            subprocess.run([str(SYNAPSE_PY), "-m", "synapse.app.homeserver", "-c", config,
                            "--generate-keys"], check=True, capture_output=True, timeout=120)
        log = (self.work / "stdout.log").open("ab")
        self.proc = subprocess.Popen([str(SYNAPSE_PY), "-m", "synapse.app.homeserver",
                                      "-c", config], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("Synapse exited:\n" + self.log())
            with contextlib.suppress(OSError):
                import urllib.request
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Synapse did not become healthy:\n" + self.log())
            time.sleep(0.1)

    def log(self) -> str:
        path = self.work / "stdout.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class User:
    """One account on the homeserver, spoken for over the client-server API."""

    def __init__(self, http: aiohttp.ClientSession, base: str, answer: dict[str, Any]):
        self.http = http
        self.base = base
        self.user_id: str = answer["user_id"]
        self.token: str = answer["access_token"]
        self.device_id: str = answer["device_id"]
        self.password = PASSWORD

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   **params: str) -> dict[str, Any]:
        async with self.http.request(
                method, f"{self.base}/_matrix/client/v3{path}", json=body, params=params,
                headers={"Authorization": f"Bearer {self.token}"}) as answer:
            data: dict[str, Any] = await answer.json()
            if answer.status != 200:
                raise AssertionError(f"{method} {path}: {answer.status} {data}")
            return data

    async def set_name(self, name: str) -> None:
        await self.call("PUT", f"/profile/{self.user_id}/displayname", {"displayname": name})

    async def create_room(self, invite: list[str], public: bool = True,
                          encrypted: bool = False, alias: str | None = None) -> str:
        body: dict[str, Any] = {"preset": "public_chat" if public else "private_chat",
                                "invite": invite}
        if encrypted:
            body["initial_state"] = [{"type": "m.room.encryption", "state_key": "",
                                      "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
        if alias:
            body["room_alias_name"] = alias
        return str((await self.call("POST", "/createRoom", body))["room_id"])

    async def join(self, room: str) -> None:
        await self.call("POST", f"/join/{room}", {})

    async def send(self, room: str, content: dict[str, Any],
                   kind: str = "m.room.message") -> str:
        txn = uuid.uuid4().hex
        return str((await self.call("PUT", f"/rooms/{room}/send/{kind}/{txn}",
                                    content))["event_id"])

    async def kick(self, room: str, user: str) -> None:
        await self.call("POST", f"/rooms/{room}/kick", {"user_id": user})

    async def devices(self) -> list[str]:
        return [d["device_id"] for d in (await self.call("GET", "/devices"))["devices"]]

    async def redact(self, room: str, event_id: str) -> None:
        await self.call("PUT", f"/rooms/{room}/redact/{event_id}/{uuid.uuid4().hex}", {})

    async def upload(self, data: bytes, mime: str, name: str) -> str:
        """The mxc:// URL of ``data``, uploaded as this user."""
        async with self.http.post(f"{self.base}/_matrix/media/v3/upload", data=data,
                                  params={"filename": name},
                                  headers={"Authorization": f"Bearer {self.token}",
                                           "Content-Type": mime}) as answer:
            body = await answer.json()
            assert answer.status == 200, body
            return str(body["content_uri"])

    async def download(self, mxc: str) -> bytes:
        """The bytes of an mxc:// URL, as an up-to-date client fetches them."""
        server, media = mxc.removeprefix("mxc://").split("/", 1)
        async with self.http.get(
                f"{self.base}/_matrix/client/v1/media/download/{server}/{media}",
                headers={"Authorization": f"Bearer {self.token}"}) as answer:
            assert answer.status == 200, (answer.status, await answer.text())
            return await answer.read()

    async def events(self, room: str) -> list[dict[str, Any]]:
        """The room's timeline, oldest first (raw: encrypted events stay encrypted)."""
        data = await self.call("GET", f"/rooms/{room}/messages", dir="b", limit="1000")
        return list(reversed(data["chunk"]))


async def register(http: aiohttp.ClientSession, base: str, name: str) -> User:
    """A new account; ``name`` is made unique (and a valid localpart)."""
    local = re.sub(r"[^a-z0-9._=-]", "", name.lower())[:20] or "user"
    body = {"username": f"{local}-{uuid.uuid4().hex[:8]}", "password": PASSWORD,
            "auth": {"type": "m.login.dummy"}, "inhibit_login": False}
    async with http.post(f"{base}/_matrix/client/v3/register", json=body) as answer:
        data = await answer.json()
        assert answer.status == 200, data
    return User(http, base, data)


async def register_admin(http: aiohttp.ClientSession, base: str) -> User:
    """A server admin, through the shared-secret registration of Synapse's admin API."""
    url = f"{base}/_synapse/admin/v1/register"
    async with http.get(url) as answer:
        nonce = (await answer.json())["nonce"]
    name = f"admin-{uuid.uuid4().hex[:8]}"
    mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), name.encode(), PASSWORD.encode(), b"admin"]))
    body = {"nonce": nonce, "username": name, "password": PASSWORD, "admin": True,
            "mac": mac.hexdigest()}
    async with http.post(url, json=body) as answer:
        data = await answer.json()
        assert answer.status == 200, data
    return User(http, base, data)


async def limit_messages(admin: User, user: str, per_second: int, burst: int) -> None:
    """Synapse's message rate limit for ``user`` alone (the others stay relaxed)."""
    async with admin.http.post(
            f"{admin.base}/_synapse/admin/v1/users/{user}/override_ratelimit",
            json={"messages_per_second": per_second, "burst_count": burst},
            headers={"Authorization": f"Bearer {admin.token}"}) as answer:
        assert answer.status == 200, await answer.text()


class SyncProxy:
    """A reverse proxy to Synapse that remembers every ``/sync`` answer's body."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.synced: list[str] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        try:
            async with self._http.request(request.method, self.upstream + request.path_qs,
                                          headers=headers, data=await request.read()
                                          ) as answer:
                body = await answer.read()
                status, ctype = answer.status, answer.headers.get("Content-Type")
        except aiohttp.ClientError:
            return web.Response(status=502, text="upstream down")
        if request.path.endswith("/sync") and status == 200:
            self.synced.append(body.decode(errors="replace"))
            self._changed.set()
        return web.Response(status=status, body=body,
                            headers={"Content-Type": ctype} if ctype else None)

    async def wait_synced(self, needle: str, timeout: float = 20) -> None:
        """Return once a /sync answer handed ``needle`` (an event id) to the client."""
        deadline = time.monotonic() + timeout
        while not any(needle in body for body in self.synced):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no /sync answer carried {needle}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
