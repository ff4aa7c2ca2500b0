"""A real mail system for tests: Dovecot IMAP and an SMTP server delivering into it.

:class:`MailServer` starts Dovecot (passwd-file users, Maildir under a temp dir, mail owned
by Debian's ``mail`` user as Dovecot requires) and ``smtp_sink.py`` (aiosmtpd handing each
mail to ``dovecot-lda``) on free ports of 127.0.0.1, the way ../shared/peers' recipe does.
Between the bridge and Dovecot sits :class:`ImapTap`, a byte-for-byte TCP relay that lets a
test see when Dovecot handed a mail's body to the bridge. Users read their mailbox
straight from the Maildir (:meth:`MailServer.mails`) and write with aiosmtplib.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib

from rlkit import free_port, wait_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOMAIN = "test.local"
BRIDGE = f"bridge@{DOMAIN}"
PASSWORD = "secret-pass"
SINK = Path(__file__).with_name("smtp_sink.py")


class ImapTap:
    """A TCP relay in front of Dovecot that records what the server sent to clients.

    It runs its own event loop in a thread: the tests' loop blocks while it waits for the
    daemon to exit (rlkit's ``terminate``), and the daemon's IMAP traffic must go on.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._seen = bytearray()  # everything the server sent, all connections
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self._loop).result(10)

    async def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def drop_connections(self) -> None:
        """Cut every client connection, as a network failure would."""
        def cut() -> None:
            for w in list(self._writers):
                w.transport.abort()
        self._loop.call_soon_threadsafe(cut)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tap: bool) -> None:
            try:
                while data := await src.read(65536):
                    if tap:
                        with self._lock:
                            self._seen += data
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    def sent(self, needle: str) -> bool:
        with self._lock:
            return needle.encode() in self._seen

    async def wait_sent(self, needle: str, timeout: float = 20) -> None:
        """Return once the server has sent ``needle`` (a Message-ID in a body) to a client."""
        deadline = time.monotonic() + timeout
        while not self.sent(needle):
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never sent {needle} to the bridge")
            await asyncio.sleep(0.01)


class MailServer:
    def __init__(self, capabilities: str | None = None, tls: bool = False) -> None:
        self.capabilities = capabilities  # replaces Dovecot's CAPABILITY list after login
        self.tls = tls  # IMAPS on imaps_port, STARTTLS for IMAP and SMTP (self-signed)
        self.imaps_port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix="roomlink-mail-"))
        self.work.chmod(0o755)  # dovecot's unprivileged processes traverse it
        self.imap_port = free_port()
        self.smtp_port = free_port()
        self.dovecot: subprocess.Popen[bytes] | None = None
        self.sink: subprocess.Popen[bytes] | None = None
        self.tap: ImapTap | None = None
        mail = pwd.getpwnam("mail")
        self.uid, self.gid = mail.pw_uid, mail.pw_gid

    @property
    def conf(self) -> Path:
        return self.work / "dovecot.conf"

    def _write_config(self) -> None:
        for sub in ("mail", "run", "state"):
            (self.work / sub).mkdir(exist_ok=True)
        os.chown(self.work / "mail", self.uid, self.gid)
        (self.work / "users").write_text(f"bridge:{{PLAIN}}{PASSWORD}::::::\n")
        ssl = "ssl = no"
        if self.tls:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-subj", "/CN=127.0.0.1", "-days", "1",
                            "-keyout", str(self.work / "key.pem"),
                            "-out", str(self.work / "cert.pem")], check=True,
                           capture_output=True)
            ssl = (f"ssl = yes\nssl_cert = <{self.work}/cert.pem\n"
                   f"ssl_key = <{self.work}/key.pem")
        self.conf.write_text(f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {self.work}/run
state_dir = {self.work}/state
instance_name = dovecot-{self.work.name}
log_path = {self.work}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {self.uid}
mail_location = maildir:~/Maildir
{f"imap_capability = {self.capabilities}" if self.capabilities else ""}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.work}/users
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.work}/mail/%u allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port if self.tls else 0}
  }}
}}
""")

    async def start(self) -> None:
        self._write_config()
        await self.start_dovecot()
        try:
            await self.start_smtp()
        except OSError:
            self.stop()
            raise
        self.tap = ImapTap(self.imap_port)
        await self.tap.start()

    async def start_smtp(self) -> None:
        log = (self.work / "smtp.log").open("ab")
        self.sink = subprocess.Popen(
            [sys.executable, str(SINK), "--port", str(self.smtp_port),
             "--dovecot-conf", str(self.conf), "--mailroot", str(self.work / "mail"),
             *(["--tls-dir", str(self.work)] if self.tls else [])],
            stdout=log, stderr=log)
        log.close()
        await wait_port(self.smtp_port, timeout=20, proc=self.sink)

    async def restart_smtp(self) -> None:
        """Stop the SMTP server (every connection to it drops), then start it again."""
        _stop(self.sink)
        await self.start_smtp()

    def smtp_connections(self) -> int:
        """How many connections have sent mail to the SMTP server so far."""
        return (self.work / "smtp.log").read_text(errors="replace").count("SMTP connection\n")

    async def start_dovecot(self) -> None:
        out = (self.work / "dovecot.stdout").open("ab")
        self.dovecot = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)],
                                        stdout=out, stderr=out)
        out.close()
        try:
            await wait_port(self.imap_port, timeout=10, proc=self.dovecot)
        except OSError:
            raise AssertionError("dovecot did not start:\n" + self.log()) from None

    def stop_dovecot(self) -> None:
        _stop(self.dovecot)
        self.dovecot = None

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in
                       (self.work / "dovecot.stdout", self.work / "dovecot.log")
                       if p.exists())

    def stop(self) -> None:
        _stop(self.sink)
        _stop(self.dovecot)
        self.sink = self.dovecot = None
        shutil.rmtree(self.work, ignore_errors=True)

    # -- the users' side --------------------------------------------------------------------
    def imap_options(self, **extra: object) -> dict[str, object]:
        assert self.tap is not None
        return {"host": "127.0.0.1", "port": self.tap.port, "security": "none",
                "username": "bridge", "password": PASSWORD, **extra}

    def options(self, **extra: object) -> dict[str, object]:
        """The email connector's options for the bridge's mailbox on this server."""
        return {
            "address": BRIDGE,
            "smtp": {"host": "127.0.0.1", "port": self.smtp_port, "security": "none"},
            "imap": self.imap_options(),
            "reconnect_initial": 0.2,
            "reconnect_max": 2.0,
            **extra,
        }

    def mails(self, user: str) -> list[EmailMessage]:
        """Every mail in ``user``'s mailbox, oldest first."""
        root = self.work / "mail" / user / "Maildir"
        files = [f for sub in ("new", "cur") if (root / sub).is_dir()
                 for f in (root / sub).iterdir()]
        # Maildir names start with the delivery time in seconds and a per-second counter
        files.sort(key=lambda f: (f.stat().st_mtime_ns, f.name))
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(f.read_bytes()) for f in files]  # type: ignore[misc]

    def raw_mails(self, user: str) -> list[bytes]:
        root = self.work / "mail" / user / "Maildir"
        files = [f for sub in ("new", "cur") if (root / sub).is_dir()
                 for f in (root / sub).iterdir()]
        files.sort(key=lambda f: (f.stat().st_mtime_ns, f.name))
        return [f.read_bytes() for f in files]

    def flags(self, user: str, folder: str = "") -> list[str]:
        """Maildir info flags of each mail in a folder ("" is INBOX), e.g. "S" once seen."""
        root = self.work / "mail" / user / "Maildir" / (f".{folder}" if folder else "")
        files = [f for sub in ("new", "cur") if (root / sub).is_dir()
                 for f in (root / sub).iterdir()]
        return [f.name.partition(":2,")[2] for f in files]

    async def wait_mails(self, user: str, count: int, timeout: float = 20
                         ) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(mails := self.mails(user)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{user}: {len(mails)} of {count} mails")
            await asyncio.sleep(0.05)
        return mails

    async def send(self, msg: EmailMessage | bytes, sender: str | None = None,
                   recipients: list[str] | None = None) -> None:
        """Deliver a mail through the SMTP server, as a user's mail program would."""
        if isinstance(msg, bytes):
            assert sender is not None and recipients is not None
        if sender == "":  # the null sender of bounces: MAIL FROM:<>
            assert recipients is not None
            raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=policy.SMTP)
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.smtp_port,
                                       start_tls=self.tls, validate_certs=False,
                                       timeout=30) as client:
                await client.sendmail("", recipients, raw)
            return
        await aiosmtplib.send(msg, hostname="127.0.0.1", port=self.smtp_port, sender=sender,
                              recipients=recipients, start_tls=self.tls, use_tls=False,
                              validate_certs=False, timeout=30)


def new_mail(sender: str, text: str, name: str = "", to: str = BRIDGE,
             subject: str = "hello", in_reply_to: str | None = None,
             html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{sender.split('@')[1]}>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
