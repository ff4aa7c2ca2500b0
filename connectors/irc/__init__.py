"""IRC connector (jaraco ``irc`` asyncio client)."""

from .connector import IrcConnector

__all__ = ["IrcConnector"]
