"""Email connector (aiosmtplib out, aioimaplib IMAP IDLE in)."""

from .connector import EmailConnector

__all__ = ["EmailConnector"]
