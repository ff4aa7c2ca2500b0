"""The Slack connector's options, as admins write them under ``connectors:``."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from roomlink.connector import ConnectorOptions


class SlackOptions(ConnectorOptions):
    bot_token: SecretStr  # xoxb-...: every Web API call but apps.connections.open
    app_token: SecretStr  # xapp-... with connections:write: opens Socket Mode connections
    # The Web API base; every method goes to {api_url}{method}, apps.connections.open too
    # (the Socket Mode URL is whatever that answers): GovSlack, a proxy, a test server.
    api_url: str = "https://slack.com/api/"
    post_as_author: bool = True  # username/icon_url per post (needs chat:write.customize)
    relay_bots: bool = False  # relay other bots' and integrations' posts
    max_text_length: int = Field(default=4000, ge=100, le=40000)  # per post; longer is split
    room_rate: float = Field(default=1.0, gt=0)  # posts per second per channel (Slack: ~1)
    room_burst: int = Field(default=3, ge=1)  # posts at once per channel before pacing
    request_timeout: float = Field(default=30.0, gt=0)  # seconds per Web API call
    ping_interval: float = Field(default=5.0, gt=0)  # Socket Mode ping; silence: reconnect
    reconnect_initial: float = Field(default=1.0, gt=0)  # apps.connections.open failing:
    reconnect_max: float = Field(default=60.0, gt=0)  # the wait doubles up to this, jittered
    resolve_interval: float = Field(default=60.0, gt=0)  # retry unresolved rooms this often
    # files larger than this are neither downloaded nor uploaded (Slack's own limit: 1 GB);
    # they go as a note or a [file: ...] line instead
    max_file_bytes: int = Field(default=1_000_000_000, ge=1)

    @field_validator("bot_token", "app_token")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("api_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://slack.com/api/")
        return v if v.endswith("/") else v + "/"
