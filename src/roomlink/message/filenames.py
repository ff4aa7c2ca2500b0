"""Cleaning a file's name before it is stored or shown anywhere (issue 21, item 7).

A name comes from a platform or an HTTP client and ends up in a store, a download's
``Content-Disposition``, an export folder and other people's chat windows. It must not
climb out of a folder (``../etc/passwd``), hide what it is (a right-to-left override
turning ``gpj.exe`` into ``exe.jpg`` on screen), break a line or a header (control
characters) or exceed what file systems take (255 bytes). Letters of every script stay.
"""

from __future__ import annotations

import unicodedata

from roomlink.message.model import clean_str

MAX_BYTES = 255
FALLBACK = "file"
_MAX_EXTENSION_BYTES = 32  # a longer "extension" is just part of the name

# bidi embeddings, overrides and isolates, marks, and the Arabic letter mark: they
# reorder what is shown. Zero-width joiners stay (emoji sequences, Persian, Indic).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = set("/\\")


def _keep(c: str) -> bool:
    if c in _BIDI or c == "\ufeff":
        return False
    # control, surrogate, line and paragraph separator: never part of a name
    return unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp")


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` bytes of UTF-8, on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def clean_filename(name: str | None) -> str:
    """A name safe to store, show and save: no path separator, never ``.`` or ``..``,
    no control or bidi-override characters, 1 to 255 bytes of UTF-8 (a long name is cut
    on a character boundary and keeps its extension)."""
    text = unicodedata.normalize("NFC", clean_str(name or ""))
    text = "".join("_" if c in _SEPARATORS else c for c in text if _keep(c))
    text = text.replace("\ufffd", "").strip()
    if text.strip(".") == "":
        return FALLBACK
    if len(text.encode("utf-8")) <= MAX_BYTES:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and stem and len(ext.encode("utf-8")) <= _MAX_EXTENSION_BYTES:
        suffix = "." + ext
        return _cut(stem, MAX_BYTES - len(suffix.encode("utf-8"))).rstrip() + suffix
    return _cut(text, MAX_BYTES).rstrip() or FALLBACK
