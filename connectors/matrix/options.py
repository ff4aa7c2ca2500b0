"""The Matrix connector's options, as admins write them under ``connectors:``."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from roomlink.connector import ConnectorOptions

USER_ID = re.compile(r"@[^:\s]+:\S+")


class MatrixOptions(ConnectorOptions):
    homeserver: str  # the client-server API root, e.g. https://matrix.example.org
    user_id: str  # the bot's account, e.g. "@roomlink:example.org"
    # one of the two: a token (with its device), or a password to log in once; the device
    # id and token that login gives are then kept in the party's store
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_name: str = "roomlink"  # shown in the account's session list
    # folder of the end-to-end encryption keys (a SQLite file per device); they must
    # survive restarts, or encrypted rooms cannot be read after one. Default: "keys" in
    # the connector's state folder beside its party's store (README "Matrix")
    key_store: str | None = None
    encryption: bool = True  # read and write encrypted rooms
    sync_timeout: float = Field(default=30.0, gt=0, le=120)  # long-poll seconds of /sync
    # events per room in one /sync answer; more (after a long downtime) are fetched with
    # /messages, so a smaller value costs requests, never messages
    sync_timeline_limit: int = Field(default=1000, ge=1, le=10000)
    # the largest file relayed natively, each way; default: the homeserver's upload
    # limit (its media config, m.upload.size), else 50 MB. Larger files go as a link
    max_file_bytes: int | None = Field(default=None, gt=0)
    request_timeout: float = Field(default=60.0, gt=0)  # seconds for one API call
    reconnect_initial: float = Field(default=1.0, gt=0)  # first wait after a failed sync
    reconnect_max: float = Field(default=60.0, gt=0)  # the wait doubles up to this

    @field_validator("homeserver")
    @classmethod
    def _homeserver_ok(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. https://matrix.org")
        return value

    @field_validator("user_id")
    @classmethod
    def _user_ok(cls, value: str) -> str:
        if not USER_ID.fullmatch(value):
            raise ValueError("must be a full Matrix user id, e.g. @roomlink:example.org")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> MatrixOptions:
        if self.access_token is None and self.password is None:
            raise ValueError("give access_token or password")
        return self
