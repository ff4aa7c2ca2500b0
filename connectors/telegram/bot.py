"""The session with the Bot API: python-telegram-bot's ``Bot`` pointed at ``api_url``,
and what its errors mean for delivery."""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from roomlink.connector import ConnectorError, PermanentError, RateLimited, RoomDown

from .options import TelegramOptions

# what the connector handles; anything else is not even sent to us
ALLOWED_UPDATES = ["message", "edited_message", "channel_post", "edited_channel_post"]


class RawBot(Bot):
    """A ``Bot`` whose getUpdates returns the updates as the server sent them.

    ``Bot.get_updates`` turns the whole batch into objects at once: one malformed update
    would fail every call and stall the bot on it forever. Here each update is parsed
    (and, when broken, skipped) on its own.
    """

    async def raw_updates(self, offset: int | None, wait: int) -> list[dict[str, Any]]:
        result = await self._post(
            "getUpdates",
            {"offset": offset, "timeout": wait, "allowed_updates": ALLOWED_UPDATES},
            # the server holds the request up to ``wait`` seconds before it answers
            read_timeout=wait + (self._request[0].read_timeout or 10.0),
        )
        if not isinstance(result, list):
            raise NetworkError(f"getUpdates answered {type(result).__name__}, not a list")
        return result


def make_bot(opts: TelegramOptions) -> RawBot:
    timeout = opts.request_timeout

    def request(pool: int) -> HTTPXRequest:
        return HTTPXRequest(connection_pool_size=pool, read_timeout=timeout,
                            write_timeout=timeout, connect_timeout=timeout,
                            pool_timeout=timeout, media_write_timeout=timeout)

    return RawBot(
        opts.token.get_secret_value(),
        base_url=f"{opts.api_url}/bot",
        base_file_url=f"{opts.api_url}/file/bot",
        request=request(8),  # one delivery worker per room may call at once
        get_updates_request=request(1),
    )


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def delivery_error(exc: TelegramError, room: str, reachable: bool) -> ConnectorError:
    """The core's view of a failed call: wait and resend, retry, or give up."""
    if isinstance(exc, RetryAfter):
        return RateLimited(f"429 Too Many Requests: {exc}", retry_seconds(exc))
    if isinstance(exc, Forbidden):  # kicked from the group, blocked by the user
        return PermanentError(f"Telegram refused to post in {room}: {exc.message}")
    if isinstance(exc, BadRequest):  # chat not found, text Telegram cannot take ...
        return PermanentError(f"Telegram refused the message for {room}: {exc.message}")
    if isinstance(exc, InvalidToken):
        return RoomDown(f"the Bot API does not accept the token: {exc.message}")
    if isinstance(exc, TimedOut):  # it may have arrived: retrying can double it
        return ConnectorError(f"timed out: {exc.message}")
    if isinstance(exc, NetworkError) and not reachable:
        return RoomDown(f"the Bot API is unreachable: {exc.message}")
    if isinstance(exc, ChatMigrated):  # followed by the caller; here only if it loops
        return ConnectorError(f"{room} moved to {exc.new_chat_id}")
    return ConnectorError(f"{type(exc).__name__}: {exc.message}")
