"""Store URLs: which engine one names and with what arguments; find the password in one
however it is written, and hide it.

A password taken from the environment (``postgresql://app:${DB_PASSWORD}@db/x``) may hold
``@``, ``/``, ``?`` or ``#``, which a URL must percent-encode. Generic parsers then split
it in the wrong place and print the rest as the host. Here the userinfo ends at the
*last* ``@`` (RFC 3986 forbids a raw ``@`` in the host, port, path and query of these
URLs), so such a password is still found whole, hidden whole, and used as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from roomlink.store.errors import StoreError

_NEEDS_ENCODING = set("@/?#:[]% ")


@dataclass(frozen=True, slots=True)
class Parts:
    scheme: str
    user: str | None  # as written (maybe percent-encoded)
    password: str | None  # as written
    rest: str  # host, port, path and query

    def without_userinfo(self) -> str:
        return f"{self.scheme}://{self.rest}"


def split(url: str) -> Parts | None:
    """The URL's parts, or None when it is not ``scheme://...``."""
    scheme, sep, tail = url.partition("://")
    if not sep:
        return None
    userinfo, at, rest = tail.rpartition("@")
    if not at or scheme.lower().startswith("sqlite"):  # a file path may hold an '@'
        return Parts(scheme, None, None, tail)
    user, colon, password = userinfo.partition(":")
    return Parts(scheme, user, password if colon else None, rest)


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    parts = split(url)
    if parts is None or parts.password is None:
        return url
    return f"{parts.scheme}://{parts.user}:***@{parts.rest}"


def passwords(url: str) -> set[str]:
    """The password as written and as decoded, for scrubbing logs (may be empty)."""
    parts = split(url)
    if parts is None or not parts.password:
        return set()
    return {parts.password, unquote(parts.password)}


def unencoded_password(url: str) -> bool:
    """Whether the password holds characters a URL must percent-encode."""
    parts = split(url)
    if parts is None or parts.password is None:
        return False
    raw = parts.password
    # a '%' followed by two hex digits is an encoded character, not a problem
    stripped = "".join(
        c for i, c in enumerate(raw) if not (c == "%" and _hex2(raw[i + 1 : i + 3]))
    )
    return any(c in _NEEDS_ENCODING for c in stripped)


def _hex2(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9]*)(?:\+\w+)?://(?P<rest>.*)$", re.S)


def parse_url(url: str) -> tuple[str, str]:
    """('sqlite', the file's path) or ('postgresql', the URL as given)."""
    m = _SCHEME.match(url)
    scheme = m["scheme"].lower() if m else ""
    if m is not None and scheme == "sqlite":
        rest = m["rest"]
        path = unquote(rest[1:].partition("?")[0]) if rest.startswith("/") else ""
        if not path or path == ":memory:" or path.startswith("file:"):
            raise StoreError(f"a sqlite store must be a file: {redact(url)!r}")
        return "sqlite", path
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
    raise StoreError(
        f"unsupported store URL {redact(url)!r}: expected sqlite:///PATH or postgresql://..."
    )


def connect_args(url: str) -> dict[str, Any]:
    """asyncpg's arguments for a PostgreSQL store URL: the DSN without its userinfo, and
    the user and password apart, so that a password with an unencoded '@' or '/' is used
    as written rather than misread as the host."""
    parts = split(url)
    if parts is None:
        raise StoreError(f"bad store URL {redact(url)!r}")
    args: dict[str, Any] = {"dsn": f"postgresql://{parts.rest}"}
    if parts.user:
        args["user"] = unquote(parts.user)
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    return args
