"""Split canonical text for platforms with a maximum message length."""

from __future__ import annotations


def split_text(text: str, limit: int | None) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters, preferring line breaks,
    then spaces; a word longer than ``limit`` is cut where it must be."""
    if limit is None or len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = window.rfind("\n")
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
            # never leave a dangling backslash escape at the end of a part
            while cut > 1 and rest[cut - 1] == "\\":
                cut -= 1
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip(" \n")
    if rest:
        parts.append(rest)
    return [p for p in parts if p] or [""]
