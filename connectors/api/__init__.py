"""HTTP API connector: post with JSON, read a room's stream over a WebSocket."""

from .connector import ApiConnector

__all__ = ["ApiConnector"]
