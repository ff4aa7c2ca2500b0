"""Loading and checking the config file.

:func:`load_config` reads one YAML file and returns a :class:`Config`, or raises a
:class:`ConfigError` listing every problem found, each with the file, line and key path.
Messages never repeat the offending value: it may be a token.

``${VAR}`` and ``${VAR:-default}`` are replaced in string values (never in keys) after
the YAML is parsed, so an environment value cannot change the document's structure.
``$${`` is a literal ``${``. As in the shell, ``:-`` also applies when VAR is empty.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import types as _pytypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from roomlink.connector import (
    Connector,
    ConnectorOptions,
    check_host_port,
    connector_type_names,
    load_connector_type,
)
from roomlink.model import RoomRef

Loc = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)

NICK_PLACEHOLDERS = ("nick", "party", "platform", "connector")
_TOP_KEYS = ("parties", "connectors", "pipes", "delivery", "admin")
_REQUIRED_TOP_KEYS = ("parties", "connectors", "pipes")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 200_000  # guards against alias bombs
_STORE_RE = re.compile(r"(?P<scheme>sqlite|postgres|postgresql)(?:\+\w+)?://", re.IGNORECASE)
_VAR_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_BODY_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    path: str  # e.g. "pipes.acme.rooms[1].connector"; empty for the whole file
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config is not usable; ``issues`` says everything found wrong with it."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


# --- the models ----------------------------------------------------------------------


class PartyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str  # after load_config, a relative sqlite path is made absolute

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        match = _STORE_RE.match(value)
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


class AdminConfig(BaseModel):
    """The admin HTTP server (``/metrics``, ``/healthz``); off unless configured."""

    model_config = ConfigDict(extra="forbid")

    listen: str  # host:port; keep it on a private address

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return check_host_port(value)


class ConnectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    party: str
    type: str
    options: ConnectorOptions  # an instance of the connector type's own Options model


class Config(BaseModel):
    path: Path  # the config file, absolute
    parties: dict[str, PartyConfig]
    connectors: dict[str, ConnectorConfig]
    pipes: dict[str, PipeConfig]
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    admin: AdminConfig | None = None

    def secrets(self) -> set[str]:
        """Every secret the config holds, for scrubbing logs: SecretStr option values and
        store passwords. Never contains the empty string."""
        found: set[str] = set()
        for connector in self.connectors.values():
            _collect_secrets(connector.options, found)
        for party in self.parties.values():
            _add_url_password(urlsplit(party.store).password, found)
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
            hint = _did_you_mean(name, NICK_PLACEHOLDERS)
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


# --- helpers for messages ------------------------------------------------------------


def format_path(loc: Loc) -> str:
    """``("pipes", "acme", "rooms", 1, "connector")`` -> ``pipes.acme.rooms[1].connector``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY_RE.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += "[" + repr(part) + "]"
    return out


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _unknown(what: str, word: str, candidates: Sequence[str], listing: str = "") -> str:
    msg = f"unknown {what} '{word}'{_did_you_mean(word, candidates)}"
    if listing:
        msg += f" ({listing}: {', '.join(sorted(candidates)) or 'none'})"
    return msg


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _model_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _flatten(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _flatten(get_args(annotation)[0])
    if origin is Union or origin is _pytypes.UnionType:
        return [t for arg in get_args(annotation) for t in _flatten(arg) if t is not type(None)]
    return [annotation]


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model that pydantic was validating at ``loc`` (for did-you-mean candidates)."""
    candidates: list[Any] = [model]
    for part in loc:
        tagged = [c for c in candidates if getattr(c, "__name__", None) == part]
        if tagged:  # pydantic names the union member it tried
            candidates = tagged
            continue
        following: list[Any] = []
        for cand in candidates:
            origin, args = get_origin(cand), get_args(cand)
            if isinstance(cand, type) and issubclass(cand, BaseModel) and isinstance(part, str):
                for name, f in cand.model_fields.items():
                    if part in (name, f.alias):
                        following += _flatten(f.annotation)
            elif origin in (dict, Mapping) and len(args) == 2:
                following += _flatten(args[1])
            elif origin in (list, set, frozenset, Sequence) and args:
                following += _flatten(args[0])
            elif origin is tuple and args and isinstance(part, int):
                arg = args[0] if args[-1] is Ellipsis else args[min(part, len(args) - 1)]
                following += _flatten(arg)
        candidates = following
    for cand in candidates:
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


# --- reading YAML --------------------------------------------------------------------


class _TooLarge(yaml.YAMLError):
    pass


class _Loader:
    """Turns the composed YAML into plain data, recording each key's line on the way."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.issues: list[ConfigIssue] = []
        self.lines: dict[Loc, int] = {}
        self.bad_values: set[Loc] = set()  # values whose ${VAR} could not be replaced
        self.data: Any = None
        self._constructor: yaml.SafeLoader | None = None
        self._active: set[int] = set()
        self._count = 0

    def add(self, loc: Loc, message: str, line: int | None = None) -> None:
        if line is None:
            line = self.line_of(loc)
        self.issues.append(ConfigIssue(self.file, line, format_path(loc), message))

    def line_of(self, loc: Loc) -> int | None:
        while loc not in self.lines:
            if not loc:
                return None
            loc = loc[:-1]
        return self.lines[loc]

    def parse(self, text: str) -> bool:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                self.add((), "the file is empty; expected keys parties, connectors and pipes")
                return False
            self.lines[()] = node.start_mark.line + 1
            if not isinstance(node, yaml.MappingNode):
                self.add(
                    (), "the top level must be a mapping with keys parties, connectors and pipes"
                )
                return False
            self._constructor = loader
            self.data = self._convert(node, ())
            return True
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or "syntax error"
            context = f" ({exc.context})" if exc.context else ""
            line = None if mark is None else mark.line + 1
            self.add((), f"invalid YAML: {problem}{context}", line)
        except _TooLarge as exc:
            self.add((), str(exc))
        except yaml.YAMLError as exc:
            self.add((), f"invalid YAML: {type(exc).__name__}")
        finally:
            loader.dispose()
        return False

    def _convert(self, node: yaml.Node, loc: Loc) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise _TooLarge("the document is too large (aliases expanding too far?)")
        if id(node) in self._active:
            self.add(loc, "an alias refers to a mapping or list that contains it")
            return None
        if isinstance(node, yaml.MappingNode):
            self._active.add(id(node))
            try:
                out: dict[str, Any] = {}
                for key, line, child in self._entries(node, loc):
                    self.lines[(*loc, key)] = line
                    out[key] = self._convert(child, (*loc, key))
                return out
            finally:
                self._active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self._active.add(id(node))
            try:
                items: list[Any] = []
                for index, item in enumerate(node.value):
                    self.lines[(*loc, index)] = item.start_mark.line + 1
                    items.append(self._convert(item, (*loc, index)))
                return items
            finally:
                self._active.discard(id(node))
        assert self._constructor is not None
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.add(loc, f"cannot read this value: {exc.problem or 'bad value'}")
            return None
        if isinstance(value, str):
            value = self._substitute(value, loc)
        return value

    def _entries(self, node: yaml.MappingNode, loc: Loc) -> list[tuple[str, int, yaml.Node]]:
        """The keys of a mapping (with ``<<`` merges), reporting duplicates."""
        explicit: list[tuple[str, int, yaml.Node]] = []
        merged: list[tuple[str, int, yaml.Node]] = []
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    if not isinstance(source, yaml.MappingNode) or id(source) in self._active:
                        self.add(loc, "'<<' must merge a mapping (or a list of mappings)", line)
                        continue
                    self._active.add(id(source))
                    try:
                        merged += self._entries(source, loc)
                    finally:
                        self._active.discard(id(source))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.add(loc, "a key must be a plain string, not a mapping or list", line)
                continue
            key = str(key_node.value)
            if key in seen:
                self.add((*loc, key), f"duplicate key '{key}' (first on line {seen[key]})", line)
                continue
            seen[key] = line
            explicit.append((key, line, value_node))
        for key, line, value_node in merged:  # explicit keys win, then earlier merges
            if key not in seen:
                seen[key] = line
                explicit.append((key, line, value_node))
        return explicit

    def _substitute(self, text: str, loc: Loc) -> str:
        if "${" not in text:
            return text
        out: list[str] = []
        pos = 0
        for match in _VAR_RE.finditer(text):
            out.append(text[pos : match.start()])
            pos = match.end()
            if match.group(0) == "$${":
                out.append("${")
                continue
            body = match.group(1)
            parsed = None if body is None else _VAR_BODY_RE.fullmatch(body)
            if parsed is None:
                self.bad_values.add(loc)
                self.add(
                    loc,
                    "malformed ${...} reference: use ${NAME} or ${NAME:-default} "
                    "(write $${ for a literal ${)",
                )
                continue
            name, default = parsed.group(1), parsed.group(2)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.bad_values.add(loc)
                    self.add(loc, f"environment variable {name} is not set (used as ${{{name}}})")
                    continue
                value = default
            out.append(value)
        out.append(text[pos:])
        return "".join(out)

    # --- validation helpers ---

    def data_loc(self, loc: Sequence[str | int]) -> Loc:
        """Map a pydantic ``loc`` (from the root) onto the document, dropping union tags."""
        current: Any = self.data
        out: list[str | int] = []
        for index, part in enumerate(loc):
            last = index == len(loc) - 1
            if isinstance(current, dict) and isinstance(part, str):
                if part in current:
                    current = current[part]
                    out.append(part)
                elif last:  # a missing or unknown key
                    out.append(part)
            elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
                current = current[part]
                out.append(part)
        return tuple(out)

    def validate(
        self,
        model: type[_M],
        raw: Any,
        base: Loc,
        extra_keys: Sequence[str] = (),
    ) -> _M | None:
        if not isinstance(raw, dict):
            self.add(
                base, "expected a mapping of keys: " + ", ".join([*extra_keys, *_model_keys(model)])
            )
            return None
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                self._pydantic_issue(model, base, err["loc"], err, extra_keys)
            return None

    def _pydantic_issue(
        self, model: type[BaseModel], base: Loc, loc: Loc, err: Any, extra_keys: Sequence[str]
    ) -> None:
        path = self.data_loc((*base, *loc))
        if any(path[:n] in self.bad_values for n in range(len(path) + 1)):
            return  # already reported: an unset environment variable
        kind: str = err["type"]
        if kind == "extra_forbidden":
            inner = _model_at(model, loc[:-1])
            keys = _model_keys(inner) if inner is not None else []
            if len(loc) == 1:
                keys = [*extra_keys, *keys]
            message = _unknown("key", str(loc[-1]), keys)
        elif kind == "missing":
            message = f"missing required key '{loc[-1]}'" if loc else "missing required value"
        elif kind == "value_error" and "error" in err.get("ctx", {}):
            message = str(err["ctx"]["error"])
        else:
            message = str(err["msg"])
        source = err.get("input")
        if isinstance(source, str) and len(source) >= 3 and source in message:
            message = message.replace(source, "***")  # a plugin's message echoing the value
        self.add(path, message)


# --- loading -------------------------------------------------------------------------


def _resolve_store(url: str, base: Path) -> str:
    match = _STORE_RE.match(url)
    if match is None or match["scheme"].lower() != "sqlite":
        return url
    file, sep, query = url[match.end() + 1 :].partition("?")
    if file == ":memory:" or file.startswith("/"):
        return url
    return f"{url[: match.end()]}/{base / file}{sep}{query}"


def _section(loader: _Loader, key: str) -> dict[str, Any] | None:
    assert isinstance(loader.data, dict)
    if key not in loader.data:
        if key in _REQUIRED_TOP_KEYS:
            loader.add((key,), f"missing required key '{key}'")
        return None
    value = loader.data[key]
    if not isinstance(value, dict):
        loader.add((key,), f"expected a mapping of names to {key} settings")
        return None
    return value


def load_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    types: Mapping[str, type[Connector]] | None = None,
) -> Config:
    """Read and check the config file; raise :class:`ConfigError` naming every problem.

    ``env`` defaults to ``os.environ``. ``types`` replaces the installed connector types
    (entry points) by the given name -> class map; meant for tests.
    """
    file = str(path)
    config_path = Path(path).resolve()
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(file, None, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(file, None, "", "not a UTF-8 text file")]) from None

    loader = _Loader(file, os.environ if env is None else env)
    if not loader.parse(text):
        raise ConfigError(loader.issues)
    data: dict[str, Any] = loader.data
    for key in data:
        if key not in _TOP_KEYS:
            loader.add((key,), _unknown("key", key, _TOP_KEYS))

    parties_raw = _section(loader, "parties")
    connectors_raw = _section(loader, "connectors")
    pipes_raw = _section(loader, "pipes")

    parties: dict[str, PartyConfig] = {}
    for name, raw in (parties_raw or {}).items():
        party = loader.validate(PartyConfig, raw, ("parties", name))
        if party is not None:
            parties[name] = PartyConfig(store=_resolve_store(party.store, config_path.parent))

    type_names = sorted(types) if types is not None else connector_type_names()
    loaded: dict[str, type[Connector] | None] = {}
    connectors: dict[str, ConnectorConfig] = {}
    for name, raw in (connectors_raw or {}).items():
        base: Loc = ("connectors", name)
        if not isinstance(raw, dict):
            loader.add(base, "expected a mapping with keys party, type and the type's options")
            continue
        party_name = raw.get("party")
        if "party" not in raw:
            loader.add((*base, "party"), "missing required key 'party'")
        elif not isinstance(party_name, str) or not party_name:
            loader.add((*base, "party"), "expected the name of a party")
        elif parties_raw is not None and party_name not in parties_raw:
            loader.add(
                (*base, "party"), _unknown("party", party_name, list(parties_raw), "parties")
            )
        type_name = raw.get("type")
        cls: type[Connector] | None = None
        if "type" not in raw:
            loader.add(
                (*base, "type"), f"missing required key 'type' (one of: {', '.join(type_names)})"
            )
        elif not isinstance(type_name, str) or not type_name:
            loader.add(
                (*base, "type"), f"expected a connector type (one of: {', '.join(type_names)})"
            )
        elif type_name not in type_names:
            loader.add(
                (*base, "type"),
                _unknown("connector type", type_name, type_names, "installed types"),
            )
        elif type_name in loaded:
            cls = loaded[type_name]
        else:
            try:
                cls = types[type_name] if types is not None else load_connector_type(type_name)
            except Exception as exc:
                loader.add((*base, "type"), f"connector type '{type_name}' failed to load: {exc!r}")
            loaded[type_name] = cls
        if cls is None:
            continue
        option_values = {k: v for k, v in raw.items() if k not in ("party", "type")}
        options = loader.validate(cls.Options, option_values, base, extra_keys=("party", "type"))
        if options is not None and isinstance(party_name, str) and isinstance(type_name, str):
            connectors[name] = ConnectorConfig(party=party_name, type=type_name, options=options)

    pipes: dict[str, PipeConfig] = {}
    for name, raw in (pipes_raw or {}).items():
        pipe = loader.validate(PipeConfig, raw, ("pipes", name))
        rooms = raw.get("rooms") if isinstance(raw, dict) else None
        for index, room in enumerate(rooms if isinstance(rooms, list) else []):
            target = room.get("connector") if isinstance(room, dict) else None
            if connectors_raw is not None and isinstance(target, str) and target:
                if target not in connectors_raw:
                    loader.add(
                        ("pipes", name, "rooms", index, "connector"),
                        _unknown("connector", target, list(connectors_raw), "connectors"),
                    )
        if pipe is None:
            continue
        first: dict[RoomRef, int] = {}
        for index, room_config in enumerate(pipe.rooms):
            if room_config.ref in first:
                earlier = first[room_config.ref]
                loader.add(
                    ("pipes", name, "rooms", index),
                    f"room {room_config.ref} is already in this pipe (rooms[{earlier}])",
                )
            first.setdefault(room_config.ref, index)
        pipes[name] = pipe

    names = list(pipes)
    for i, first_name in enumerate(names):
        first_rooms = {room.ref for room in pipes[first_name].rooms}
        for second_name in names[i + 1 :]:
            shared = sorted(first_rooms & {room.ref for room in pipes[second_name].rooms})
            if len(shared) >= 2:
                loader.add(
                    ("pipes", second_name),
                    f"pipes {first_name} and {second_name} share rooms "
                    f"{_and([str(ref) for ref in shared])}: a message would arrive twice",
                )

    delivery = DeliveryConfig()
    if data.get("delivery") is not None:
        checked = loader.validate(DeliveryConfig, data["delivery"], ("delivery",))
        delivery = checked if checked is not None else delivery

    admin = None
    if data.get("admin") is not None:
        admin = loader.validate(AdminConfig, data["admin"], ("admin",))

    if loader.issues:
        unique = list(dict.fromkeys(loader.issues))
        unique.sort(key=lambda issue: issue.line or 0)
        raise ConfigError(unique)
    return Config(
        path=config_path,
        parties=parties,
        connectors=connectors,
        pipes=pipes,
        delivery=delivery,
        admin=admin,
    )
