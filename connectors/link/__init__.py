"""``type: link``: one conversation spanning two roomlink instances (README "Federation")."""

from .connector import LinkConnector

__all__ = ["LinkConnector"]
