"""Sending one mail with aiosmtplib, and what each SMTP answer means for the core."""

from __future__ import annotations

import logging
import ssl
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


async def send_mail(opts: EmailOptions, msg: EmailMessage, recipients: list[str],
                    log: logging.Logger) -> None:
    """Hand the mail to the SMTP server. PermanentError when it refuses for good (5xx for
    every recipient, or for the message), ConnectorError (or RateLimited) otherwise."""
    o = opts.smtp
    password = o.password.get_secret_value() if o.password else None
    try:
        refused, _ = await aiosmtplib.send(
            msg,
            sender=opts.address,
            recipients=recipients,
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
