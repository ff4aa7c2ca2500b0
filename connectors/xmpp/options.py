"""The XMPP connector's options, as admins write them under ``connectors:``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from slixmpp import JID
from slixmpp.jid import InvalidJID

from roomlink.connector import ConnectorOptions


class XmppOptions(ConnectorOptions):
    jid: str  # the bot's account, e.g. roomlink@example.org (a resource is optional)
    password: SecretStr
    server: str | None = None  # default: the JID's domain (its DNS SRV records, if any)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 5222, or 5223 for direct
    # starttls: upgrade the plain connection (the XMPP default); direct: TLS from the first
    # byte (XEP-0368); none: no TLS at all, only for a local test server
    tls: Literal["starttls", "direct", "none"] = "starttls"
    tls_verify: bool = True  # false: accept any certificate (self-signed test servers)
    nick: str = Field(default="roomlink", min_length=1, max_length=64)  # the nick in rooms
    send_timeout: float = Field(default=15.0, gt=0)  # seconds to wait for the room's echo
    join_timeout: float = Field(default=30.0, gt=0)  # seconds for a join before retrying
    catch_up_limit: int = Field(default=5000, ge=0)  # most archived messages read on start
    ping_interval: float = Field(default=60.0, gt=0)  # seconds between pings to the server
    ping_timeout: float = Field(default=30.0, gt=0)  # no answer: reconnect
    reconnect_initial: float = Field(default=1.0, gt=0)  # first wait before reconnect/re-join
    reconnect_max: float = Field(default=300.0, gt=0)  # the wait doubles up to this, jittered
    # files (XEP-0363 uploads out, XEP-0066 links in): the largest file relayed either way;
    # default: the max-file-size the account's upload service announces
    max_file_bytes: int | None = Field(default=None, gt=0)
    upload_service: str | None = None  # its JID; default: found on the account's domain
    # fetch what room members link with an OOB element: the bridge then makes HTTP
    # requests to addresses people chose (see the README's note); false: links stay links
    download_files: bool = True
    download_timeout: float = Field(default=120.0, gt=0)  # seconds for one whole download

    @field_validator("jid")
    @classmethod
    def _jid_ok(cls, value: str) -> str:
        try:
            jid = JID(value)
        except InvalidJID as exc:
            raise ValueError(f"{value!r} is not a valid JID ({exc})") from None
        if not jid.user or not jid.domain:
            raise ValueError(f"{value!r} must be an account, e.g. roomlink@example.org")
        return value

    @field_validator("nick")
    @classmethod
    def _nick_ok(cls, value: str) -> str:
        if value != value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("the nick must not start or end with spaces or hold control "
                             "characters")
        return value

    @property
    def account(self) -> JID:
        return JID(self.jid)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 5223 if self.tls == "direct" else 5222
