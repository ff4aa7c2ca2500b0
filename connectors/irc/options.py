"""The IRC connector's options, as admins write them under ``connectors:`` in the config."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from roomlink.connector import ConnectorOptions


class SaslOptions(BaseModel):
    """SASL PLAIN credentials (sent with CAP REQ sasl / AUTHENTICATE before registration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1)
    password: SecretStr


def _check_nick(value: str) -> str:
    if not value or any(c in value for c in " ,*?!@:#\r\n\x00") or value[0].isdigit():
        raise ValueError(f"{value!r} is not a valid IRC nick")
    return value


class IrcOptions(ConnectorOptions):
    server: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 6697 with tls, else 6667
    tls: bool = False
    tls_verify: bool = True  # false: accept any certificate (self-signed test servers)
    nick: str
    alt_nicks: list[str] = Field(default_factory=list)  # tried in order when the nick is taken
    username: str | None = None  # default: the nick
    realname: str = "roomlink relay"
    password: SecretStr | None = None  # server password (PASS)
    sasl: SaslOptions | None = None
    nickserv_password: SecretStr | None = None  # PRIVMSG NickServ :IDENTIFY after welcome
    channel_keys: dict[str, SecretStr] = Field(default_factory=dict)  # channel -> key (+k)
    ignore_nicks: list[str] = Field(default_factory=list)  # never relayed (other bots)
    fallback_encoding: str = "latin-1"  # for inbound lines that are not valid UTF-8
    formatting: Literal["codes", "plain"] = "codes"  # outbound: IRC codes or plain text
    max_lines: int = Field(default=5, ge=1)  # per message; beyond it the rest is cut
    no_ping_nicks: bool = True  # zero-width joiner in relayed nicks
    burst_lines: int = Field(default=4, ge=1)  # lines sent at once before pacing starts
    line_interval: float = Field(default=1.0, ge=0)  # seconds per line once the burst is spent
    ping_interval: float = Field(default=60.0, gt=0)  # PING after this long without input
    ping_timeout: float = Field(default=30.0, gt=0)  # no answer to the PING: reconnect
    reconnect_initial: float = Field(default=1.0, gt=0)  # first wait before reconnect / rejoin
    reconnect_max: float = Field(default=300.0, gt=0)  # the wait doubles up to this, jittered

    @field_validator("nick")
    @classmethod
    def _nick_ok(cls, value: str) -> str:
        return _check_nick(value)

    @field_validator("alt_nicks")
    @classmethod
    def _alt_nicks_ok(cls, value: list[str]) -> list[str]:
        return [_check_nick(v) for v in value]

    @field_validator("username")
    @classmethod
    def _username_ok(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in " @\r\n\x00")):
            raise ValueError(f"{value!r} is not a valid IRC username")
        return value

    @field_validator("realname")
    @classmethod
    def _realname_ok(cls, value: str) -> str:
        if any(c in value for c in "\r\n\x00"):
            raise ValueError("realname must not contain CR, LF or NUL")
        return value or "roomlink relay"

    @field_validator("fallback_encoding")
    @classmethod
    def _encoding_ok(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 6697 if self.tls else 6667

    @property
    def effective_username(self) -> str:
        return self.username or self.nick
