"""Telegram connector (python-telegram-bot's ``telegram.Bot``, long polling)."""

from .connector import TelegramConnector

__all__ = ["TelegramConnector"]
