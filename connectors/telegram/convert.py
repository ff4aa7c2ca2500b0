"""Telegram text <-> canonical text, both directions; pure functions.

Inbound, a Telegram message is plain text plus entities (bold, links, code ...) whose
offsets count UTF-16 code units; they become canonical text. Outbound, canonical text is
rendered to the HTML subset of ``parse_mode=HTML``, every literal character escaped, and
cut into messages of at most 4,096 visible characters whose tags are balanced.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from roomlink.message.markup import Style, escape, render

MAX_VISIBLE = 4096  # Telegram's limit on a message's text after entity parsing
SAFE_SCHEMES = ("http://", "https://", "mailto:", "tg://")


class EntityLike(Protocol):
    """The fields of a Bot API MessageEntity that matter here (telegram.MessageEntity)."""

    @property
    def type(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def url(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...


# -- Telegram -> canonical ---------------------------------------------------------------

@dataclass
class _Span:
    type: str
    start: int  # code point indices into the text
    end: int
    url: str | None
    language: str | None
    children: list[_Span]


def to_canonical(text: str, entities: Sequence[EntityLike] = ()) -> str:
    """Canonical text for a Telegram text (or caption) and its entities."""
    if not text:
        return ""
    index = _utf16_to_index(text)
    spans: list[_Span] = []
    for e in entities:
        start = index.get(e.offset)
        end = index.get(e.offset + e.length)
        if start is None or end is None or end <= start:
            continue  # points into the middle of a character or outside: ignore it
        spans.append(_Span(str(e.type), start, end, e.url, e.language, []))
    spans.sort(key=lambda s: (s.start, -s.end))
    roots: list[_Span] = []
    stack: list[_Span] = []
    for span in spans:
        while stack and span.start >= stack[-1].end:
            stack.pop()
        if stack and span.end > stack[-1].end:
            span.end = stack[-1].end  # overlapping, not nested: clip to the parent
            if span.end <= span.start:
                continue
        (stack[-1].children if stack else roots).append(span)
        stack.append(span)
    out = _render_spans(text, 0, len(text), roots)
    return out.replace("\r\n", "\n").replace("\r", "\n")


def _utf16_to_index(text: str) -> dict[int, int]:
    """UTF-16 offset -> code point index, for every offset on a character boundary."""
    table: dict[int, int] = {}
    units = 0
    for i, ch in enumerate(text):
        table[units] = i
        units += 2 if ord(ch) > 0xFFFF else 1
    table[units] = len(text)
    return table


def _render_spans(text: str, start: int, end: int, spans: list[_Span]) -> str:
    out: list[str] = []
    pos = start
    for span in spans:
        if span.start > pos:
            out.append(escape(text[pos:span.start]))
        inner = _render_spans(text, span.start, span.end, span.children)
        out.append(_wrap(span, text[span.start:span.end], inner, at_line_start=(
            span.start == 0 or text[span.start - 1] == "\n")))
        pos = span.end
    if pos < end:
        out.append(escape(text[pos:end]))
    return "".join(out)


_MARKS = {"bold": "**", "italic": "*", "strikethrough": "~~"}
_URL_OK = re.compile(r"^(https?|mailto|tg):[^\s<>]+$", re.IGNORECASE)


def _wrap(span: _Span, raw: str, inner: str, at_line_start: bool) -> str:
    kind = span.type
    if kind in _MARKS:
        return _emphasis(inner, _MARKS[kind])
    if kind == "code":
        return _code_span(raw)
    if kind == "pre":
        body = raw.rstrip("\n")
        fence = "`" * max(3, _longest_run(body, "`") + 1)
        lang = (span.language or "").strip()
        lang = lang if re.fullmatch(r"[\w+#.-]{1,32}", lang) else ""
        return f"{'' if at_line_start else chr(10)}{fence}{lang}\n{body}\n{fence}\n"
    if kind == "text_link" and span.url and _URL_OK.match(span.url):
        if not inner.strip():
            return inner
        return f"[{inner}](<{span.url}>)"
    if kind == "url" and _URL_OK.match(raw):
        return f"<{raw}>"
    if kind in ("blockquote", "expandable_blockquote"):
        lines = inner.split("\n")
        lead = "" if at_line_start else "\n"
        return lead + "\n".join("> " + ln for ln in lines) + "\n"
    # mention, hashtag, text_mention, underline, spoiler, url without a scheme ...: the
    # canonical form has no such thing; the text itself says it
    return inner


def _emphasis(inner: str, mark: str) -> str:
    """``inner`` between ``mark``s, with the spaces kept outside (CommonMark ignores a
    delimiter next to a space)."""
    stripped = inner.strip()
    if not stripped:
        return inner
    lead = inner[: len(inner) - len(inner.lstrip())]
    trail = inner[len(inner.rstrip()):]
    if "\n\n" in stripped:  # emphasis cannot span paragraphs: leave it out
        return inner
    return f"{lead}{mark}{stripped}{mark}{trail}"


def _code_span(raw: str) -> str:
    raw = raw.replace("\n", " ")
    if not raw.strip():
        return escape(raw)
    ticks = "`" * (_longest_run(raw, "`") + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") else ""
    return f"{ticks}{pad}{raw}{pad}{ticks}"


def _longest_run(text: str, ch: str) -> int:
    runs = re.findall(f"{re.escape(ch)}+", text)
    return max((len(r) for r in runs), default=0)


# -- canonical -> Telegram HTML ----------------------------------------------------------

def escape_html(text: str) -> str:
    """Literal text for ``parse_mode=HTML``: only ``<``, ``>`` and ``&`` are special."""
    return html.escape(text, quote=False)


def _html_link(label: str, href: str) -> str:
    plain_label = re.sub(r"</?code>", "", label)  # a link cannot hold code in Telegram
    if href.lower().startswith(SAFE_SCHEMES) and not any(c in href for c in "\r\n\t "):
        return f'<a href="{html.escape(href, quote=True)}">{plain_label}</a>'
    shown = escape_html(href)
    return label if not href or shown == plain_label else f"{label} ({shown})"


HTML_STYLE = Style(
    bold=("<b>", "</b>"),
    italic=("<i>", "</i>"),
    strike=("<s>", "</s>"),
    code=("<code>", "</code>"),
    code_block=("<pre>", "</pre>"),
    quote="&gt; ",
    link=_html_link,
    text=escape_html,
)


def to_html(canonical: str) -> str:
    """Telegram HTML for canonical text: markup as tags, everything else literal."""
    return render(canonical.replace("\r\n", "\n").replace("\r", "\n"), HTML_STYLE)


# -- splitting ---------------------------------------------------------------------------

_TOKEN = re.compile(r"<(/?)([a-z-]+)([^>]*)>|&(?:#\d+|#x[0-9a-fA-F]+|[a-z]+);|.", re.DOTALL)


@dataclass
class _Atom:
    raw: str
    units: int  # visible UTF-16 code units; 0 for a tag
    tag: str | None = None  # tag name for tags
    closing: bool = False
    space: bool = False  # a place to cut after


def _atoms(markup: str) -> list[_Atom]:
    atoms = []
    for m in _TOKEN.finditer(markup):
        raw = m.group(0)
        if m.group(2) is not None:
            atoms.append(_Atom(raw, 0, m.group(2), closing=m.group(1) == "/"))
        else:
            ch = html.unescape(raw) if raw.startswith("&") else raw
            units = sum(2 if ord(c) > 0xFFFF else 1 for c in ch)
            atoms.append(_Atom(raw, units, space=ch.isspace()))
    return atoms


def visible_length(markup: str) -> int:
    """How many characters (UTF-16 code units) Telegram counts in this HTML."""
    return sum(a.units for a in _atoms(markup))


def split_html(markup: str, limit: int = MAX_VISIBLE) -> list[str]:
    """Cut Telegram HTML into parts of at most ``limit`` visible characters, at a line
    break or a space where there is one; every part closes the tags it opened and
    reopens those still open at the start of the next."""
    atoms = _atoms(markup)
    parts: list[str] = []
    opened: list[_Atom] = []  # tags open at the start of the current part
    start = 0
    while start < len(atoms):
        count, cut, best, best_newline = 0, len(atoms), -1, -1
        for i in range(start, len(atoms)):
            a = atoms[i]
            if count + a.units > limit:
                cut = i
                break
            count += a.units
            if a.space:
                best = i
                if a.raw == "\n":
                    best_newline = i
        if cut < len(atoms):
            if best_newline > start and best_newline >= best - 200:
                cut = best_newline + 1
            elif best > start:
                cut = best + 1
        body = atoms[start:cut]
        stack = list(opened)
        for a in body:
            if a.tag is None:
                continue
            if a.closing:
                for j in range(len(stack) - 1, -1, -1):
                    if stack[j].tag == a.tag:
                        del stack[j]
                        break
            else:
                stack.append(a)
        text = "".join(a.raw for a in opened) + "".join(a.raw for a in body)
        text += "".join(f"</{a.tag}>" for a in reversed(stack))
        if any(a.units and not a.space for a in body):
            parts.append(_trim(text))
        opened = stack
        start = cut
        while start < len(atoms) and atoms[start].space:  # no part starts with a space
            start += 1
    return parts or [""]


def _trim(part: str) -> str:
    """Drop trailing spaces before the closing tags at the end of a part."""
    m = re.search(r"(\s+)((?:</[a-z-]+>)*)$", part)
    return part[: m.start()] + m.group(2) if m else part


# -- one message as the group sees it ----------------------------------------------------

def one_line(name: str) -> str:
    """An author name on one line: a line break in a name could fake another message."""
    return " ".join(name.split())


def byline(name: str) -> str | None:
    """The author alone, in bold: the caption of a file that comes without text."""
    shown = one_line(name)
    return f"<b>{escape_html(shown)}</b>" if shown else None


def compose(kind: str, display: str, nick: str, canonical: str,
            files: Sequence[tuple[str, str | None]] = ()) -> str:
    """The HTML for one relayed message: the author's name in bold, then the text.

    ``display`` is the author as the pipe's ``nick_format`` renders it (the default is
    the bare name, followed here by a colon); ``files`` are (url, name) pairs.
    """
    body = to_html(canonical)
    for url, name in files:
        label = escape_html(one_line(name or "file"))
        if url.lower().startswith(("http://", "https://")):
            body += f'\n📎 <a href="{html.escape(url, quote=True)}">{label}</a>'
        else:
            body += f"\n📎 {label} ({escape_html(url)})"
    who = f"<b>{escape_html(one_line(nick))}</b>"
    if kind == "action":
        return f"* {who} {body}"
    if kind in ("join", "part"):
        return f"<i>{who} {body}</i>" if "<" not in body else f"{who} {body}"
    if kind == "topic":
        return f"{who} changed the topic to: {body}"
    shown = one_line(display)
    if not shown:
        return body
    sep = " " if display[-1:].isspace() or shown[-1] in ":>]|" else ": "
    return f"<b>{escape_html(shown)}</b>{sep}{body}"
