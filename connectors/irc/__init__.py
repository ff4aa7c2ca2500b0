"""IRC connector (jaraco ``irc`` asyncio client)."""

from roomlink_connectors.irc.connector import IrcConnector

__all__ = ["IrcConnector"]
