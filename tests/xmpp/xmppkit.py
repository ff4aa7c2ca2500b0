"""A real Prosody for tests (Debian's package, with MUC and the room archive), and
slixmpp clients that play people in its rooms.

Prosody refuses to run as root, so it runs as the ``prosody`` user (``setpriv`` execs,
so the PID we hold is Prosody's own) from a temp dir that user owns; it is stopped by
that PID. Accounts are made with ``prosodyctl register``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import slixmpp
from slixmpp import JID
from slixmpp.xmlstream import ET

from filekit import PeerFile
from rlkit import free_port, wait_port

DOMAIN = "localhost"
MUC = "conference.localhost"
UPLOAD = "upload.localhost"  # the XEP-0363 service
UPLOAD_LIMIT = 2 * 1024 * 1024  # bytes: the service refuses larger files
BRIDGE_JID, BRIDGE_PASSWORD, BRIDGE_NICK = f"bridge@{DOMAIN}", "bridgepass", "roomlink"
PEOPLE_PASSWORD = "peoplepass"
PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"

CONFIG = """\
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
certificates = "{work}/certs"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{work}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ {direct_ports} }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
admin_socket = "{work}/prosody.sock"
-- no mod_posix (it refuses root): the fixture starts prosody as its own user instead;
-- mod_limits is not loaded: no rate limits on c2s or in rooms
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; {tls_module} }}
modules_disabled = {{ "s2s"; "offline"; {no_tls} }}
c2s_require_encryption = {require}
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
VirtualHost "{domain}"
Component "{muc}" "muc"
    modules_enabled = {{ "muc_mam" }}
    restrict_room_creation = false
    muc_room_locking = false
    muc_room_default_public = true
    muc_room_default_persistent = true
    muc_room_default_change_subject = true
    muc_log_by_default = true
    muc_log_all_rooms = true
    max_archive_query_results = 100
-- XEP-0363 uploads over plain HTTP on 127.0.0.1 (no name to resolve: the URLs say the
-- address); the test server's upload limit is small so that "too big" is cheap to test
Component "{upload}" "http_file_share"
    http_host = "127.0.0.1"
    http_external_url = "http://127.0.0.1:{http_port}/"
    http_file_share_size_limit = {upload_limit}
    http_file_share_daily_quota = 1000000000
"""


@dataclass
class Prosody:
    """Prosody 0.12 on 127.0.0.1: the account ``bridge``, and one per person (made on
    first use), in rooms of ``conference.localhost`` that keep an archive."""

    tls: bool = False  # STARTTLS required, with a throwaway self-signed certificate
    port: int = field(default_factory=free_port)
    direct_port: int = field(default_factory=free_port)  # direct TLS (XEP-0368), with tls
    http_port: int = field(default_factory=free_port)  # XEP-0363 uploads and downloads
    work: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    accounts: set[str] = field(default_factory=set)

    async def start(self) -> None:
        if self.work is None:
            self._prepare()
        assert self.work is not None
        log = (self.work / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", PROSODY,
             "--config", str(self.config), "-F"], stdout=log, stderr=log)
        log.close()
        try:
            await wait_port(self.port, timeout=15, proc=self.proc)
            await wait_port(self.http_port, timeout=15, proc=self.proc)
            if self.tls:
                await wait_port(self.direct_port, timeout=15, proc=self.proc)
        except OSError:
            self.stop(keep=True)
            raise AssertionError("prosody did not start:\n" + self.log()) from None

    def _prepare(self) -> None:
        """A temp dir owned by the prosody user: config, certificate, the two accounts."""
        self.work = Path(tempfile.mkdtemp(prefix="roomlink-prosody-"))
        self.work.chmod(0o755)
        (self.work / "data").mkdir()
        (self.work / "certs").mkdir()
        if self.tls:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:{MUC}",
                 "-keyout", str(self.work / "certs" / f"{DOMAIN}.key"),
                 "-out", str(self.work / "certs" / f"{DOMAIN}.crt")],
                check=True, capture_output=True)
        (self.work / "prosody.cfg.lua").write_text(CONFIG.format(
            work=self.work, port=self.port, domain=DOMAIN, muc=MUC,
            direct_ports=self.direct_port if self.tls else "", http_port=self.http_port,
            upload=UPLOAD, upload_limit=UPLOAD_LIMIT,
            tls_module='"tls";' if self.tls else "",
            no_tls="" if self.tls else '"tls";',
            require="true" if self.tls else "false"))
        subprocess.run(["chown", "-R", "prosody:prosody", str(self.work)], check=True)
        # run as root, prosodyctl switches to the prosody user itself
        subprocess.run([PROSODYCTL, "--config", str(self.config), "register", "bridge",
                        DOMAIN, BRIDGE_PASSWORD], check=True, capture_output=True)

    async def account(self, nick: str) -> str:
        """The JID of an account of its own for the person called ``nick`` (a room tells
        people apart by their account: XEP-0421 occupant ids), made on first use."""
        user = "u" + hashlib.sha1(nick.encode()).hexdigest()[:12]
        if user not in self.accounts:
            proc = await asyncio.create_subprocess_exec(
                PROSODYCTL, "--config", str(self.config), "register", user, DOMAIN,
                PEOPLE_PASSWORD, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            assert await proc.wait() == 0, f"prosodyctl register {user} failed"
            self.accounts.add(user)
        return f"{user}@{DOMAIN}"

    @property
    def config(self) -> Path:
        assert self.work is not None
        return self.work / "prosody.cfg.lua"

    def log(self) -> str:
        if self.work is None:
            return ""
        return "".join(p.read_text(errors="replace") for p in
                       (self.work / "stdout.log", self.work / "prosody.log") if p.exists())

    def stop(self, keep: bool = False) -> None:
        """Stop Prosody by its PID; ``keep``: its data stays for a restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if not keep and self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    async def restart(self, down: float = 0.0) -> None:
        self.stop(keep=True)
        await asyncio.sleep(down)
        await self.start()

    def bridge_options(self, tls: str | None = None) -> dict[str, Any]:
        tls = tls or ("starttls" if self.tls else "none")
        return {"jid": BRIDGE_JID, "password": BRIDGE_PASSWORD, "server": "127.0.0.1",
                "port": self.direct_port if tls == "direct" else self.port, "tls": tls,
                "tls_verify": False, "nick": BRIDGE_NICK, "reconnect_initial": 0.2,
                "reconnect_max": 2.0, "join_timeout": 10}


@dataclass
class Seen:
    """One groupchat message a person received."""

    nick: str
    body: str
    msg_id: str
    stanza_id: str | None
    replaces: str | None
    retracts: str | None
    reply_to: str | None
    xml: str
    delayed: bool
    oob: list[str] = field(default_factory=list)  # URLs of files shared (XEP-0066)

    @property
    def is_file(self) -> bool:
        """A file as clients send it: the body is the URL an OOB element names."""
        return self.body.strip() in self.oob


class Person(slixmpp.ClientXMPP):  # type: ignore[misc]
    """Someone in a room, on an account of their own (``Person.join``)."""

    @classmethod
    async def join(cls, server: Prosody, room: str, nick: str, history: int = 0) -> Person:
        return await cls(server, room, nick, await server.account(nick)).enter(history)

    def __init__(self, server: Prosody, room: str, nick: str, jid: str) -> None:
        super().__init__(f"{jid}/test", PEOPLE_PASSWORD)
        self.prosody, self.room, self.nick = server, room, nick
        for plugin in ("xep_0030", "xep_0045", "xep_0199", "xep_0359", "xep_0363"):
            self.register_plugin(plugin)
        self.enable_direct_tls = False
        if server.tls:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = 0  # ssl.CERT_NONE: the throwaway certificate
        else:
            self.enable_plaintext = True
            self.enable_starttls = False
            self.plugin["feature_mechanisms"].unencrypted_scram = True
        self.seen: list[Seen] = []
        self.changed = asyncio.Event()
        self.add_event_handler("groupchat_message", self._on_message)

    async def enter(self, history: int = 0) -> Person:
        """Connect and join the room, with the room's last ``history`` messages."""
        self.connect("127.0.0.1", self.prosody.port)
        await self.wait_until("session_start", 20)
        self.send_presence()
        await self.plugin["xep_0045"].join_muc_wait(JID(self.room), self.nick,
                                                    maxstanzas=history, timeout=20)
        return self

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            self.plugin["xep_0045"].leave_muc(JID(self.room), self.nick)
            await asyncio.wait_for(self.disconnect(wait=1.0), 5)

    def _on_message(self, msg: Any) -> None:
        xml = msg.xml
        sid = next((e.get("id") for e in xml.findall("{urn:xmpp:sid:0}stanza-id")
                    if e.get("by") == self.room), None)

        def attr(path: str) -> str | None:
            element = xml.find(path)
            return element.get("id") if element is not None else None

        self.seen.append(Seen(
            nick=msg["from"].resource, body=msg["body"], msg_id=msg["id"], stanza_id=sid,
            replaces=attr("{urn:xmpp:message-correct:0}replace"),
            retracts=attr("{urn:xmpp:message-retract:1}retract"),
            reply_to=attr("{urn:xmpp:reply:0}reply"), xml=str(msg),
            delayed=xml.find("{urn:xmpp:delay}delay") is not None,
            oob=[(x.findtext("{jabber:x:oob}url") or "").strip()
                 for x in xml.findall("{jabber:x:oob}x")]))
        self.changed.set()

    async def wait_for(self, check: Any, timeout: float = 20) -> Seen:
        deadline = time.monotonic() + timeout
        while True:
            found = next((s for s in self.seen if check(s)), None)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.nick} did not receive the message; saw "
                                     f"{[(s.nick, s.body) for s in self.seen]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def post(self, body: str, *extra: ET.Element) -> Seen:
        """Say ``body`` in the room; return it as the room echoed it (with its stanza id)."""
        msg = self.make_message(mto=JID(self.room), mbody=body, mtype="groupchat")
        msg_id = msg["id"] or self.new_id()
        msg["id"] = msg_id
        for element in extra:
            msg.append(element)
        msg.send()
        return await self.wait_for(lambda s: s.msg_id == msg_id and s.nick == self.nick)

    async def upload(self, name: str, mime: str, data: bytes) -> str:
        """Put a file on the server's upload service (XEP-0363) as a client does, under
        its base name (clients send no folder); its GET URL."""
        url: str = await self.plugin["xep_0363"].upload_file(
            os.path.basename(name), size=len(data), content_type=mime,
            input_file=io.BytesIO(data), domain=JID(DOMAIN))
        return url

    async def share(self, text: str, urls: list[str]) -> Seen:
        """Say ``text`` with files already uploaded: the body repeats each link (for
        clients without XEP-0066), an OOB element names each."""
        oobs = []
        for url in urls:
            oob = ET.Element("{jabber:x:oob}x")
            ET.SubElement(oob, "{jabber:x:oob}url").text = url
            oobs.append(oob)
        return await self.post("\n".join([text, *urls] if text else urls), *oobs)

    async def say(self, text: str) -> Seen:
        return await self.post(text)

    async def reply(self, to_stanza_id: str, text: str) -> Seen:
        return await self.post(text, ET.Element("{urn:xmpp:reply:0}reply",
                                                {"id": to_stanza_id}))

    async def correct(self, original_msg_id: str, text: str) -> Seen:
        return await self.post(text, ET.Element("{urn:xmpp:message-correct:0}replace",
                                                {"id": original_msg_id}))

    async def retract(self, stanza_id: str) -> Seen:
        fallback = ET.Element("{urn:xmpp:fallback:0}fallback",
                              {"for": "urn:xmpp:message-retract:1"})
        return await self.post("retracted a message",
                               ET.Element("{urn:xmpp:message-retract:1}retract",
                                          {"id": stanza_id}), fallback)


async def download(url: str) -> PeerFile:
    """A file as a client fetches it: the name from the URL, the type the server says."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, (resp.status, url)
        return PeerFile(unquote(url.rsplit("/", 1)[-1]), resp.content_type, await resp.read())
