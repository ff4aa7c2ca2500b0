"""The options of ``type: link``: which side listens, who the peer is, TLS, limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from roomlink.connector import ConnectorOptions, check_host_port

from .wire import parse_public


class LinkOptions(ConnectorOptions):
    listen: str | None = Field(
        default=None, description="host:port: this side accepts the other instance and "
        "hosts (orders) the conversations of the link")
    url: str | None = Field(
        default=None, description="ws:// or wss://host:port of the other instance, which "
        "hosts the conversations: this side connects")
    peer_key: str = Field(description="the other instance's `roomlink instance-id` line")
    peer_parties: list[str] | None = Field(
        default=None, description="the parties the other instance may speak for; required "
        "on the listening side; on the connecting side any party not this side's own")
    tls: dict[str, Path] | None = Field(
        default=None, description="{cert, key}: PEM files; the listening side speaks wss")
    ca: Path | None = Field(default=None, description="PEM file of the certificate(s) the "
                            "connecting side trusts for wss (default: the system's)")
    tls_verify: bool = True
    reconnect_initial: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    max_frame_bytes: int = Field(default=1_048_576, ge=65536,
                                 description="a larger frame closes the link")
    max_file_bytes: int = Field(
        default=26_214_400, ge=0, description="the largest file whose bytes this side takes "
        "from the peer (25 MiB); a larger one is recorded with a note instead of its bytes")
    max_rate: float = Field(default=200.0, gt=0, description="messages per second the peer "
                            "may send; more are read more slowly")
    burst: int = Field(default=500, ge=1)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        return None if v is None else check_host_port(v)

    @field_validator("url")
    @classmethod
    def _ws_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("ws://", "wss://")):
            raise ValueError("url must be ws://host:port or wss://host:port")
        return v

    @field_validator("peer_key")
    @classmethod
    def _key(cls, v: str) -> str:
        parse_public(v)  # ValueError with a message for the admin
        return v.strip()

    @field_validator("tls")
    @classmethod
    def _tls(cls, v: dict[str, Path] | None) -> dict[str, Path] | None:
        if v is not None and set(v) != {"cert", "key"}:
            raise ValueError("tls takes exactly cert and key (PEM file paths)")
        return v

    @model_validator(mode="after")
    def _one_side(self) -> LinkOptions:
        if (self.listen is None) == (self.url is None):
            raise ValueError("a link has either listen (this side hosts) or url (it connects)")
        if self.listen is not None and not self.peer_parties:
            raise ValueError("the listening side needs peer_parties: the parties the other "
                             "instance may speak for")
        if self.url is not None and self.tls is not None:
            raise ValueError("tls {cert, key} is for the listening side; the connecting "
                             "side takes ca and tls_verify")
        return self
