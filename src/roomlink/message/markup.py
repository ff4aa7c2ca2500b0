"""The canonical rich-text form and its renderers.

Canonical text is a small CommonMark subset: **bold**, *italic*, ~~strike~~, `code`,
fenced code blocks, [links](url), <autolinks>, > quotes and - lists. Everything else
(headings, raw HTML, tables) is literal text; an image is written as its link. Each
connector renders the one token stream into its own markup with a :class:`Style`, and
turns its platform's markup into canonical text (plain text goes through :func:`escape`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

_RULES = [
    "emphasis",
    "backticks",
    "link",
    "autolink",
    "strikethrough",
    "fence",
    "blockquote",
    "list",
    "escape",
    "newline",
]
_md = MarkdownIt("zero").enable(_RULES)
# HTML output (email bodies): the same subset, a chat line break is a <br>, and raw HTML
# in the text stays text (the "zero" preset has no html rules, so it is escaped)
_md_html = MarkdownIt("zero", {"breaks": True}).enable(_RULES)

_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>~&])")
_LINE_START_SPECIAL = re.compile(r"^(\s*)([>#+=|-]|\d+[.)])", re.MULTILINE)


def escape(plain: str) -> str:
    """Canonical text that renders exactly as ``plain``, whatever characters it holds."""
    escaped = _INLINE_SPECIAL.sub(r"\\\1", plain)
    return _LINE_START_SPECIAL.sub(_escape_line_start, escaped)


def _escape_line_start(m: re.Match[str]) -> str:
    indent, mark = m.group(1), m.group(2)
    return f"{indent}{mark[:-1]}\\{mark[-1]}" if mark[-1] in ".)" else f"{indent}\\{mark}"


def _identity(s: str) -> str:
    return s


def _plain_link(text: str, href: str) -> str:
    return text if text == href or not href else f"{text} ({href})"


@dataclass(frozen=True)
class Style:
    """How one platform writes each canonical element."""

    bold: tuple[str, str] = ("", "")
    italic: tuple[str, str] = ("", "")
    strike: tuple[str, str] = ("", "")
    code: tuple[str, str] = ("", "")
    code_block: tuple[str, str] = ("", "")  # around the whole block, newlines included
    quote: str = "> "
    bullet: str = "- "
    link: Callable[[str, str], str] = _plain_link  # (rendered text, href) -> str
    text: Callable[[str], str] = field(default=_identity)  # escapes literal text for the platform
    paragraph_sep: str = "\n\n"


PLAIN = Style()


def to_plain(canonical: str) -> str:
    """The text with markup removed, links written as ``text (url)``."""
    return render(canonical, PLAIN)


def render(canonical: str, style: Style) -> str:
    blocks: list[str] = []
    quote_depth = 0
    lists: list[list[int]] = []  # one [counter] per open list; counter < 0: bullet list
    item_marker: str | None = None
    new_list = False  # the next block starts a top-level list: separate it like a paragraph
    for tok in _md.parse(canonical):
        t = tok.type
        if t == "blockquote_open":
            quote_depth += 1
        elif t == "blockquote_close":
            quote_depth -= 1
        elif t in ("bullet_list_open", "ordered_list_open"):
            start = int(tok.attrs.get("start", 1) or 1) if t == "ordered_list_open" else -1
            new_list = new_list or not lists
            lists.append([start])
        elif t in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif t == "list_item_open":
            counter = lists[-1]
            if counter[0] < 0:
                item_marker = style.bullet
            else:
                item_marker = f"{counter[0]}. "
                counter[0] += 1
        elif t in ("inline", "fence", "code_block"):
            if t == "inline":
                body = _render_inline(tok.children or [], style)
            else:
                opening, closing = style.code_block
                # code is literal text too: a platform's escaping applies inside it (line by
                # line, so that a text function never sees, or eats, the line breaks)
                code = "\n".join(style.text(ln) for ln in tok.content.rstrip("\n").split("\n"))
                body = f"{opening}{code}{closing}"
            lines = body.split("\n")
            indent = "  " * max(len(lists) - 1, 0)
            if item_marker is not None:
                lines[0] = indent + item_marker + lines[0]
                lines[1:] = [indent + " " * len(item_marker) + ln for ln in lines[1:]]
            prefix = style.quote * quote_depth
            text = "\n".join(prefix + ln for ln in lines)
            if not blocks:
                blocks.append(text)
            else:
                blocks.append(("\n" if lists and not new_list else style.paragraph_sep) + text)
            item_marker = None
            new_list = False
    return "".join(blocks)


def _render_inline(children: list[Token], style: Style) -> str:
    out: list[str] = []
    links: list[tuple[str, int]] = []  # (href, index in out where the link text starts)
    for c in children:
        t = c.type
        if t == "text":
            out.append(style.text(c.content))
        elif t in ("softbreak", "hardbreak"):
            out.append("\n")
        elif t == "code_inline":
            out.append(style.code[0] + style.text(c.content) + style.code[1])
        elif t in ("strong_open", "strong_close"):
            out.append(style.bold[0 if t.endswith("open") else 1])
        elif t in ("em_open", "em_close"):
            out.append(style.italic[0 if t.endswith("open") else 1])
        elif t in ("s_open", "s_close"):
            out.append(style.strike[0 if t.endswith("open") else 1])
        elif t == "link_open":
            links.append((str(c.attrs.get("href", "")), len(out)))
        elif t == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:])
            del out[start:]
            out.append(style.link(label, href))
        else:
            out.append(style.text(c.content))
    return "".join(out)


def to_html(canonical: str) -> str:
    """The text as an HTML fragment; anything that looks like HTML in it is escaped."""
    return str(_md_html.render(canonical))
