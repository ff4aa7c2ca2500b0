"""The Telegram connector's options, as admins write them under ``connectors:``."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from roomlink.connector import ConnectorOptions


class TelegramOptions(ConnectorOptions):
    token: SecretStr  # from @BotFather: "123456:ABC-DEF..."
    # the Bot API server root: requests go to {api_url}/bot{token}/{method}, files to
    # {api_url}/file/bot{token}/{path} (a self-hosted Bot API server, a test server)
    api_url: str = "https://api.telegram.org"
    poll_timeout: int = Field(default=30, ge=1, le=50)  # getUpdates long-poll seconds
    relay_bots: bool = False  # relay what other bots say in the group
    request_timeout: float = Field(default=20.0, gt=0)  # seconds for one API call
    reconnect_initial: float = Field(default=1.0, gt=0)  # first wait after a failed poll
    reconnect_max: float = Field(default=60.0, gt=0)  # the wait doubles up to this

    @field_validator("token")
    @classmethod
    def _token_ok(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        # the token is pasted into URL paths: nothing that could leave the path
        if not token or any(c in token for c in "/?#% \t\r\n"):
            raise ValueError("must be the bot token from @BotFather, e.g. 123456:ABC-DEF...")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url_ok(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. https://api.telegram.org")
        return value
