"""The email connector's options, as admins write them under ``connectors:`` in the config."""

from __future__ import annotations

from email.headerregistry import Address
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from roomlink.connector import ConnectorOptions

Security = Literal["none", "starttls", "tls"]


def check_address(value: str) -> str:
    """A bare ``local@domain`` address, lower-cased; ValueError otherwise."""
    value = value.strip()
    if any(c in value for c in "\r\n\x00<>,\" ") or value.count("@") != 1:
        raise ValueError(f"{value!r} is not a plain email address (local@domain)")
    local, domain = value.split("@")
    if not local or not domain or "." not in domain.strip("."):
        raise ValueError(f"{value!r} is not a plain email address (local@domain)")
    Address(addr_spec=value)  # the stdlib's own syntax check
    return value.lower()


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: by protocol and security
    security: Security = "tls"
    username: str | None = None  # default: the connector's address
    password: SecretStr | None = None


class SmtpOptions(ServerOptions):
    @property
    def effective_port(self) -> int:
        return self.port or {"none": 25, "starttls": 587, "tls": 465}[self.security]


def check_folder(value: str) -> str:
    """A mailbox name: any characters (sent in modified UTF-7) but control characters."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError("a folder name cannot contain control characters (line breaks, tabs)")
    return value


class ImapOptions(ServerOptions):
    folder: str = Field(default="INBOX", min_length=1)  # where the bridge's mail arrives

    @field_validator("folder")
    @classmethod
    def _folder_ok(cls, value: str) -> str:
        return check_folder(value)

    @property
    def effective_port(self) -> int:
        return self.port or {"none": 143, "starttls": 143, "tls": 993}[self.security]


class EmailOptions(ConnectorOptions):
    address: str  # the bridge's own mailbox: the From of every mail, where replies arrive
    display_name_format: str = "{nick} via {party}"  # From display name; {nick} {party} {platform}
    subject_format: str = "[{pipe}] conversation"  # one stable subject per pipe; {pipe} {party}
    batch_seconds: float = Field(default=0, ge=0)  # >0: chat messages within N s make one mail
    smtp: SmtpOptions
    imap: ImapOptions
    tls_verify: bool = True  # false: accept any certificate (self-signed test servers)
    allowed_senders: list[str] = Field(default_factory=list)  # addresses or "@domain"
    reject_folder: str | None = None  # dropped mail is moved here; default: left unread
    max_message_bytes: int = Field(default=10_000_000, gt=0)  # bigger mail is skipped
    # the most bytes of files one mail carries: out, the files that would pass it go as
    # "[file: ...]" lines (and links); in, a bigger part is kept as a note
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # SMTP has no Retry-After: how long to wait when the server says "too much, later"
    # (421/450/451/452 with 4.7.x, "rate" or "too many"); such waits use up no attempt
    rate_limit_wait: float = Field(default=60.0, gt=0)
    poll_interval: float = Field(default=60.0, gt=0)  # without IDLE: check this often
    idle_renew: float = Field(default=600.0, gt=0, le=1500)  # re-issue IDLE (servers cut at 29 min)
    reconnect_initial: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=300.0, gt=0)
    # reply headers and signatures recognised (mail-parser-reply's languages, and "ru")
    reply_languages: list[str] = Field(
        default_factory=lambda: ["en", "de", "fr", "es", "it", "nl", "ru"], min_length=1)
    timeout: float = Field(default=30.0, gt=0)  # per SMTP/IMAP command

    @field_validator("address")
    @classmethod
    def _address_ok(cls, value: str) -> str:
        return check_address(value)

    @field_validator("reject_folder")
    @classmethod
    def _reject_folder_ok(cls, value: str | None) -> str | None:
        return None if value is None else check_folder(value)

    @field_validator("allowed_senders")
    @classmethod
    def _senders_ok(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            entry = entry.strip().lower()
            if entry.startswith("@"):
                if len(entry) < 3 or any(c in entry[1:] for c in "@<>, \r\n"):
                    raise ValueError(f"{entry!r} is not an @domain entry")
                out.append(entry)
            else:
                out.append(check_address(entry))
        return out

    @field_validator("reply_languages")
    @classmethod
    def _languages_ok(cls, value: list[str]) -> list[str]:
        from mailparser_reply.constants import MAIL_LANGUAGES

        known = sorted({*MAIL_LANGUAGES, "ru"} - {"david"})
        for lang in value:
            if lang not in known:
                raise ValueError(f"unknown reply language {lang!r}; known: {', '.join(known)}")
        return value

    @field_validator("display_name_format", "subject_format")
    @classmethod
    def _format_ok(cls, value: str) -> str:
        try:
            value.format(nick="", party="", platform="", pipe="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad format {value!r} ({exc}); placeholders: {{nick}} "
                             "{party} {platform} (display name), {pipe} {party} (subject)"
                             ) from None
        return value

    @model_validator(mode="after")
    def _backoff_ok(self) -> EmailOptions:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must not be below reconnect_initial")
        return self

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]
