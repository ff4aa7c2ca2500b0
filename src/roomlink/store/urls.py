"""Store URLs: find the password in one however it is written, and hide it.

A password taken from the environment (``postgresql://app:${DB_PASSWORD}@db/x``) may hold
``@``, ``/``, ``?`` or ``#``, which a URL must percent-encode. Generic parsers then split
it in the wrong place and print the rest as the host. Here the userinfo ends at the
*last* ``@`` (RFC 3986 forbids a raw ``@`` in the host, port, path and query of these
URLs), so such a password is still found whole, hidden whole, and used as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

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
