"""Every error a connector raises or handles, in one place that imports nothing.

Connectors import them from :mod:`roomlink.connector`, the plugin surface; the core
imports them from here, so that the lowest layers (the message model) can raise them too.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A send failed in a way worth retrying; counts against the retry budget."""


class RoomDown(ConnectorError):
    """The room cannot take messages now (disconnected, no listener).

    The core waits for :meth:`Connector.wait_ready` and does not spend the retry budget.
    """


class RateLimited(ConnectorError):
    """The platform asked to slow down (HTTP 429 and the like).

    The core waits ``retry_after`` seconds and sends the same message again; this spends
    no attempt of the retry budget, so a rate limit never makes a message fail.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))


class PermanentError(ConnectorError):
    """The platform refused this message for good (too large, forbidden); no retry."""


class NotSupported(PermanentError):
    """The platform has no such operation (edit, delete)."""


class BadInput(ValueError):
    """A connector handed in something no message can hold; its client gets a 4xx.

    The durable hand-in (``ConnectorContext.hand_in``) skips such an event with one
    warning, so that the platform's cursor moves on and the room's next message arrives.
    """


class ShuttingDown(Exception):
    """The daemon no longer takes input: a connector stops handing in and returns."""
