"""The models of the config file, as ``roomlink check`` validates it: parties, connectors,
pipes and their rooms, delivery and the admin server. :func:`roomlink.config.load_config`
builds a :class:`Config` from a file."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from roomlink.config.document import did_you_mean
from roomlink.connector.base import (
    ConnectorOptions,
    check_host_port,
)
from roomlink.connector.httpserve import HttpLimitOptions
from roomlink.message.model import RoomRef
from roomlink.store import urls

STORE_SCHEME = re.compile(r"(?P<scheme>sqlite|postgres|postgresql)(?:\+\w+)?://", re.IGNORECASE)


NICK_PLACEHOLDERS = ("nick", "party", "platform", "connector")


# --- the models ----------------------------------------------------------------------


class PartyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str  # after load_config, a relative sqlite path is made absolute
    # days a record is kept (then removed, leaving a chain anchor); None: forever
    retention_days: int | None = Field(default=None, ge=1)
    # Ed25519 private key (PEM) for `history digest --sign`; never stored or logged
    signing_key: SecretStr | None = None
    # PostgreSQL only: commit delivery marks with synchronous_commit = off (README)
    async_delivery_marks: bool = False
    # a folder for the party's files (README "Files"); default: beside a SQLite database
    # (``<file>.files``), inside a PostgreSQL one. A relative path is the config file's.
    files: str | None = None
    # where the party's admin server is reached from outside, + "/files": a file that
    # cannot be posted natively goes as a line with the link {files_url}/{id}/{name}
    files_url: str | None = None
    # a folder for the state its connectors keep in files (Matrix's encryption keys), one
    # subfolder per connector; default: beside a SQLite database (``<file>.state``), else
    # ``roomlink-state/<party>`` beside the config file. A relative path is the config file's.
    state_dir: str | None = None

    @field_validator("files_url")
    @classmethod
    def _check_files_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = AnyUrl(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("files_url must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("files", "state_dir")
    @classmethod
    def _check_files(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"{info.field_name} must be a folder's path")
        return value

    @field_validator("async_delivery_marks")
    @classmethod
    def _check_async_marks(cls, value: bool, info: ValidationInfo) -> bool:
        store = info.data.get("store", "")
        if value and not store.lower().startswith("postgres"):
            raise ValueError(
                "async_delivery_marks is for postgresql stores (SQLite's synchronous=NORMAL"
                " already commits without waiting for the disk)"
            )
        return value

    @field_validator("signing_key")
    @classmethod
    def _check_signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from roomlink.record.sign import load_private_key

        load_private_key(value.get_secret_value())  # BadKey is a ValueError, without the key
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        match = STORE_SCHEME.match(value)
        if match is None:
            raise ValueError(
                "expected a store URL: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB"
            )
        rest = value[match.end() :]
        if match["scheme"].lower() == "sqlite":
            if not rest.startswith("/") or not rest[1:].partition("?")[0]:
                raise ValueError(
                    "a sqlite store URL names a file: sqlite:///relative/path.db "
                    "or sqlite:////absolute/path.db"
                )
        elif not rest:
            raise ValueError("a postgresql store URL needs a host or database")
        return value


class RoomConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connector: str = Field(min_length=1)
    room: str
    direction: Literal["in", "out", "inout"] = "inout"

    @field_validator("room", mode="before")
    @classmethod
    def _room_from_int(cls, value: object) -> object:
        # A Telegram chat id written without quotes is a YAML int.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("room")
    @classmethod
    def _room_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a room must not be empty")
        return value

    @property
    def ref(self) -> RoomRef:
        return RoomRef(self.connector, self.room)


class PipeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rooms: list[RoomConfig]
    nick_format: str | None = None
    join_part: bool = False  # relay joins, parts, quits and nick changes
    topic: bool = False  # relay topic changes

    @field_validator("rooms")
    @classmethod
    def _two_rooms(cls, value: list[RoomConfig]) -> list[RoomConfig]:
        if len(value) < 2:
            raise ValueError("a pipe needs at least 2 rooms")
        return value

    @field_validator("nick_format")
    @classmethod
    def _check_nick_format(cls, value: str | None) -> str | None:
        if value is not None:
            check_nick_format(value)
        return value


class DeliveryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=8, ge=1)
    backoff_initial: float = Field(default=1.0, gt=0)  # seconds
    backoff_max: float = 300.0  # seconds
    shutdown_grace: float = Field(default=5.0, ge=0)  # seconds to finish in-flight sends

    @field_validator("backoff_max")
    @classmethod
    def _max_not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("backoff_initial")
        if isinstance(initial, float) and value < initial:
            raise ValueError("backoff_max must not be less than backoff_initial")
        return value


class ClusterConfig(BaseModel):
    """Several replicas of one config on the same PostgreSQL stores: each connector runs
    on one replica at a time, under a lease held in its party's database."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # how long a replica that stopped answering keeps its connectors before another
    # takes them over (a replica that cannot renew stops them well before)
    lease_seconds: float = Field(default=10.0, ge=2, le=600)


class AdminConfig(HttpLimitOptions):
    """The admin HTTP server (status page, ``/api/status``, ``/metrics``, ``/healthz``);
    off unless configured."""

    model_config = ConfigDict(extra="forbid")

    listen: str  # host:port; keep it on a private address
    # when set, every endpoint but /healthz wants it (Bearer header or ?token=)
    token: SecretStr | None = None

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return check_host_port(value)


class InstanceConfig(BaseModel):
    """This roomlink instance's identity on federation links (README "Federation")."""

    model_config = ConfigDict(extra="forbid")

    # Ed25519 private key (PEM, as `roomlink keygen` prints it); never stored or logged
    key: SecretStr

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        from roomlink.record.sign import load_private_key

        load_private_key(value.get_secret_value())  # BadKey is a ValueError, without the key
        return value


class ConnectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    party: str
    type: str
    options: ConnectorOptions  # an instance of the connector type's own Options model


class Config(BaseModel):
    path: Path  # the config file, absolute
    sha256: str = ""  # of the file's text as read (before ${VAR}s): the same on every replica
    parties: dict[str, PartyConfig]
    connectors: dict[str, ConnectorConfig]
    pipes: dict[str, PipeConfig]
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    admin: AdminConfig | None = None
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    instance: InstanceConfig | None = None

    def state_dir(self, party: str, connector: str) -> Path:
        """The folder of ``connector``'s own files (``ConnectorContext.state_dir``)."""
        conf = self.parties[party]
        if conf.state_dir:
            return Path(conf.state_dir) / connector
        try:
            kind, where = urls.parse_url(conf.store)
        except Exception:  # the store's own check reports it
            kind = ""
        if kind == "sqlite":
            return Path(f"{where}.state") / connector
        return self.path.parent / "roomlink-state" / party / connector

    def secrets(self) -> set[str]:
        """Every secret the config holds, for scrubbing logs: SecretStr option values and
        store passwords. Never contains the empty string."""
        found: set[str] = set()
        for connector in self.connectors.values():
            _collect_secrets(connector.options, found)
        for party in self.parties.values():
            found |= urls.passwords(party.store)
            _collect_secrets(party.signing_key, found)
        if self.instance is not None:
            _collect_secrets(self.instance.key, found)
        if self.admin is not None and self.admin.token is not None:
            found.add(self.admin.token.get_secret_value())
        found.discard("")
        return found


def check_nick_format(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` uses only the plain placeholders {nick} {party}
    {platform} {connector} (no conversions or format specs), with balanced braces."""
    allowed = ", ".join("{" + name + "}" for name in NICK_PLACEHOLDERS)
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise ValueError(
            f"bad braces in nick_format ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in NICK_PLACEHOLDERS:
            hint = did_you_mean(name, NICK_PLACEHOLDERS)
            raise ValueError(
                f"unknown placeholder {{{name}}} in nick_format{hint}; allowed: {allowed}"
            )
        if spec or conversion:
            raise ValueError(f"nick_format placeholders take no format spec; allowed: {allowed}")


def _collect_secrets(value: object, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        found.add(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, AnyUrl):
        _add_url_password(value.password, found)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_secrets(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect_secrets(item, found)


def _add_url_password(password: str | None, found: set[str]) -> None:
    if password:
        found.add(password)
        found.add(unquote(password))
