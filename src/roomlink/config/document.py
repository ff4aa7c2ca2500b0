"""Reading a YAML config document: line numbers, ``${VAR}`` substitution, located errors.

:class:`Loader` turns the YAML into plain data while remembering the line of every key,
then validates parts of it with pydantic models, turning each validation error into a
:class:`ConfigIssue` with the file, line and key path. ``roomlink.config`` builds the
config on top of it. Messages never repeat the offending value: it may be a token.
"""

from __future__ import annotations

import difflib
import re
import types as _pytypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 200_000  # guards against alias bombs
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


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown(what: str, word: str, candidates: Sequence[str], listing: str = "") -> str:
    msg = f"unknown {what} '{word}'{did_you_mean(word, candidates)}"
    if listing:
        msg += f" ({listing}: {', '.join(sorted(candidates)) or 'none'})"
    return msg


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


_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader:
    """Turns the composed YAML into plain data, recording each key's line on the way."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.issues: list[ConfigIssue] = []
        self.lines: dict[Loc, int] = {}
        self.bad_values: set[Loc] = set()  # values whose ${VAR} could not be replaced
        self.data: Any = None
        self._constructor: yaml.SafeLoader | None = None  # or the CSafeLoader
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
        # libyaml's parser where PyYAML has it: the pure-Python one took seconds for a
        # config with a thousand pipes; both give the same nodes and line marks
        loader = _YamlLoader(text)
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
            message = unknown("key", str(loc[-1]), keys)
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


