"""Sending one mail with aiosmtplib, and what each SMTP answer means for the core."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import aiosmtplib

from roomlink.connector import ConnectorError, PermanentError, RateLimited

from .options import EmailOptions


def tls_context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _temporary(code: int, text: str, what: str, wait: float) -> ConnectorError:
    """A 4xx answer: RateLimited (sent again after ``wait`` s, no attempt used up) when
    the server says it is being sent too much, else an ordinary failed attempt."""
    lowered = text.lower()
    if code in (421, 450, 451, 452) and ("4.7." in text or "rate" in lowered
                                         or "too many" in lowered):
        return RateLimited(f"{what}: {code} {text}", wait)
    return ConnectorError(f"{what}: {code} {text}")


class SmtpSender:
    """One SMTP connection, kept open between mails: a busy room's mails then cost one
    transaction each, not a TCP and TLS handshake and a login each (providers also limit
    how often a client may connect). A kept connection is used only after it answered a
    NOOP, so a mail is never sent on one the server has dropped; it is closed after
    ``IDLE_CLOSE`` seconds unused (servers cut idle clients after about five minutes),
    and after any error, since its state is then unknown."""

    IDLE_CLOSE = 30.0

    def __init__(self, opts: EmailOptions, log: logging.Logger) -> None:
        self.opts = opts
        self.log = log
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on the connection
        self._idle: asyncio.TimerHandle | None = None
        self._closing: asyncio.Future[None] | None = None

    async def send(self, msg: EmailMessage, recipients: list[str]) -> None:
        """As :func:`send_mail`."""
        async with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            try:
                await send_mail(self.opts, msg, recipients, self.log, self._ready)
            except BaseException:
                self._abandon()
                raise
            self._idle = asyncio.get_running_loop().call_later(self.IDLE_CLOSE, self._on_idle)

    async def _ready(self) -> aiosmtplib.SMTP:
        """The kept connection if it still answers, else a new one (connected, logged in);
        aiosmtplib's errors as they come, for send_mail to name."""
        client = self._client
        if client is not None:
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self._abandon()
        o, opts = self.opts.smtp, self.opts
        password = o.password.get_secret_value() if o.password else None
        client = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.effective_port,
            username=(o.username or opts.address) if password is not None else None,
            password=password,
            use_tls=o.security == "tls",
            start_tls=o.security == "starttls",
            validate_certs=opts.tls_verify,
            tls_context=tls_context(opts.tls_verify) if o.security != "none" else None,
            timeout=opts.timeout,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self._client = client
        return client

    def _on_idle(self) -> None:
        if not self._lock.locked():
            self._closing = asyncio.ensure_future(self.close())

    def _abandon(self) -> None:
        """Drop the connection without a word: its state is unknown."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        """QUIT and close the kept connection, if any, after the mail in flight."""
        async with self._lock:
            client, self._client = self._client, None
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), self.opts.timeout)
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()


async def send_mail(opts: EmailOptions, msg: EmailMessage, recipients: list[str],
                    log: logging.Logger,
                    connect: Callable[[], Awaitable[aiosmtplib.SMTP]]) -> None:
    """Hand the mail to the SMTP server through the client ``connect`` gives.
    PermanentError when it refuses for good (5xx for every recipient, or for the
    message), ConnectorError (or RateLimited) otherwise, connecting included."""
    o = opts.smtp
    try:
        client = await connect()
        refused, _ = await client.send_message(msg, sender=opts.address,
                                               recipients=recipients)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        replies = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(r.code >= 500 for r in exc.recipients):
            raise PermanentError(f"every recipient refused: {replies}") from None
        deferred = next(r for r in exc.recipients if r.code < 500)
        raise _temporary(deferred.code, replies, "recipients refused for now",
                         opts.rate_limit_wait) from None
    except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientRefused) as exc:
        if exc.code >= 500:
            raise PermanentError(f"the server refused the mail: {exc.code} {exc.message}"
                                 ) from None
        raise _temporary(exc.code, exc.message, "the server deferred the mail",
                         opts.rate_limit_wait) from None
    except aiosmtplib.SMTPResponseException as exc:
        # authentication, sender and greeting failures are the bridge's configuration or
        # the server's state, not this message: worth retrying
        raise _temporary(exc.code, exc.message, "SMTP", opts.rate_limit_wait) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise ConnectorError(f"SMTP {o.host}:{o.effective_port}: "
                             f"{exc or type(exc).__name__}") from None
    if refused:
        log.warning("SMTP: mail %s not accepted for %s", msg["Message-ID"],
                    "; ".join(f"{a}: {r.code} {r.message}" for a, r in refused.items()))
