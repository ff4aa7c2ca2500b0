"""slack-sdk's aiohttp Socket Mode client, with backoff when no connection can be opened.

The SDK reconnects by itself (``disconnect`` envelopes, closed sockets, failed pings) but
retries a failing ``apps.connections.open`` at a flat interval; this one backs off.
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from roomlink.connector import backoff


class BackoffSocketModeClient(SocketModeClient):
    def __init__(self, app_token: str, web_client: AsyncWebClient, logger: logging.Logger,
                 ping_interval: float, initial: float, maximum: float) -> None:
        super().__init__(app_token=app_token, web_client=web_client, logger=logger,
                         ping_interval=ping_interval)
        self._initial = initial
        self._maximum = maximum
        self.connections = 0  # successful apps.connections.open calls, for the health view

    async def issue_new_wss_url(self) -> str:
        attempt = 0
        while True:
            try:
                response = await self.web_client.apps_connections_open(app_token=self.app_token)
                self.connections += 1
                return str(response["url"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.closed:
                    raise
                attempt += 1
                delay = backoff(attempt, self._initial, self._maximum)
                if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
                    delay = max(delay, float(exc.response.headers.get("Retry-After", delay)))
                reason = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
                self.logger.warning("apps.connections.open failed (%s); retrying in %.1fs",
                                    reason, delay)
                await asyncio.sleep(delay)
