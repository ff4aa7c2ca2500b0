"""Slack connector (slack-sdk: AsyncWebClient out, Socket Mode in)."""

from .connector import SlackConnector

__all__ = ["SlackConnector"]
