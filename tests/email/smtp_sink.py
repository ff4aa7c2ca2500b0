"""An SMTP server for tests (aiosmtpd) that hands every accepted mail to dovecot-lda.

Run as a process: ``smtp_sink.py --port P --dovecot-conf CONF``. Recipients are
``user@anything``: the local part names the Dovecot user. ``refuse@...`` is refused
with a 550 (a mailbox that does not exist), ``later@...`` with a 451, and ``slow@...``
twice with a provider's rate limit (451 4.7.1), then accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import subprocess
import weakref
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

LDA = "/usr/lib/dovecot/dovecot-lda"


class Handler:
    def __init__(self, conf: str, mailroot: str) -> None:
        self.conf = conf
        self.mailroot = mailroot
        self.slowed = 0
        self.sessions: weakref.WeakSet[Session] = weakref.WeakSet()  # that sent mail

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if session not in self.sessions:  # MailServer.smtp_connections counts these
            self.sessions.add(session)
            print("SMTP connection", flush=True)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        local = address.split("@", 1)[0].lower()
        if local == "refuse":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local == "later":
            return f"451 4.3.0 <{address}>: try again later"
        if local == "slow" and self.slowed < 2:
            self.slowed += 1
            return f"451 4.7.1 <{address}>: sending rate exceeded, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        data = data.replace(b"\r\n", b"\n")
        # the final-delivery MTA records the envelope sender, as Postfix and Exim do: a
        # bounce (MAIL FROM:<>) gets "Return-Path: <>"
        data = f"Return-Path: <{(envelope.mail_from or '').strip('<>')}>\n".encode() + data
        for rcpt in envelope.rcpt_tos:
            user = rcpt.split("@", 1)[0].lower()
            # no -d: the user comes from the environment, so delivery needs no running
            # dovecot (mail keeps arriving while the IMAP server is down, as with a real MTA)
            home = os.path.join(self.mailroot, user)
            proc = await asyncio.create_subprocess_exec(
                LDA, "-c", self.conf, "-f", envelope.mail_from or "<>",
                "-o", f"log_path={self.mailroot}/lda.log", "-o", "stats_writer_socket_path=",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={"USER": user, "HOME": home, "PATH": os.environ.get("PATH", "")},
                user="mail", group="mail")
            out, _ = await proc.communicate(data)
            if proc.returncode != 0:
                text = out.decode(errors="replace")[:200].replace("\n", " ")
                return f"451 4.3.0 delivery failed ({proc.returncode}): {text}"
        return "250 Message accepted for delivery"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dovecot-conf", required=True)
    p.add_argument("--mailroot", required=True)
    p.add_argument("--tls-dir", help="offer STARTTLS with cert.pem/key.pem from here")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    handler: Any = Handler(args.dovecot_conf, args.mailroot)
    tls = None
    if args.tls_dir:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(f"{args.tls_dir}/cert.pem", f"{args.tls_dir}/key.pem")
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp.test.local", enable_SMTPUTF8=True,
                     data_size_limit=64 * 1024 * 1024, tls_context=tls,
                     require_starttls=tls is not None),
        "127.0.0.1", args.port)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
