"""Canonical text <-> XMPP message bodies with Message Styling (XEP-0393), both ways.

XMPP bodies are plain text; XEP-0393 lets clients show ``*bold*``, ``_italic_``,
``~strike~``, `` `code` ``, fenced ```` ``` ```` blocks and ``> `` quotes. The body is XML
character data, so nothing in it can become markup of the stanza itself. Styling has no
escape: a body whose text has no formatting of its own is marked ``<unstyled/>`` (see
:func:`needs_unstyled`) so that stray asterisks in it stay asterisks.
"""

from __future__ import annotations

import re

from roomlink.message.markup import Style, escape, render, to_plain
from roomlink.message.model import Kind, Outbound

STYLING = Style(
    bold=("*", "*"),
    italic=("_", "_"),
    strike=("~", "~"),
    code=("`", "`"),
    code_block=("```\n", "\n```"),
    quote="> ",
)

ME = "/me "  # a body starting with it is an action (XEP-0245)

# characters XML 1.0 cannot carry at all: one in a stanza would end the whole stream
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")

# a span (XEP-0393 §6.2): the opening directive at a line's start or after whitespace or
# another opening directive, not followed by whitespace; the closing one not preceded by
# whitespace; the text between them not empty and on one line
_SPAN = re.compile(r"(?<![^\s*_~`])([*_~`])(?=\S)([^\n]*?\S)\1(?![^\s*_~`.,;:!?)\]'\"])")
_CANONICAL = {"*": ("**", "**"), "_": ("*", "*"), "~": ("~~", "~~")}


def to_body(canonical: str) -> str:
    """The message body for canonical text."""
    return render(canonical, STYLING)


def xml_safe(text: str) -> str:
    """``text`` with the characters XML cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def one_line(name: str) -> str:
    """An author's name on one line: a name must not start a line of its own in a body."""
    return _LINE_BREAKS.sub(" ", name)


def needs_unstyled(canonical: str) -> bool:
    """Whether the body must be marked unstyled: it has no formatting of its own."""
    return render(canonical, STYLING) == to_plain(canonical)


def to_canonical(body: str, styled: bool = True) -> str:
    """Canonical text for a received body (``styled``: apply XEP-0393 to it)."""
    if not styled:
        return escape(body)
    out: list[str] = []
    lines = body.split("\n")
    i = 0
    quoted = False
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):  # a preformatted block, up to its closing line
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), len(lines))
            code = "\n".join(lines[i + 1:end])
            fence = "````" if "```" in code else "```"
            out.append(f"{fence}\n{code}\n{fence}")
            i = end + 1
            continue
        depth = 0
        while line.startswith(">"):  # block quotes, nested
            line = line[1:].removeprefix(" ")
            depth += 1
        if quoted and not depth:
            out.append("")  # the quote ends here (CommonMark would carry it on)
        quoted = depth > 0
        out.append("> " * depth + _spans(line))
        i += 1
    return "\n".join(out)


def _spans(text: str) -> str:
    """One line's spans as canonical markup; everything else escaped."""
    out: list[str] = []
    pos = 0
    for m in _SPAN.finditer(text):
        out.append(escape(text[pos:m.start()]))
        mark, inner = m.group(1), m.group(2)
        if mark == "`":
            ticks = "``" if "`" in inner else "`"
            pad = " " if inner.startswith("`") or inner.endswith("`") else ""
            out.append(f"{ticks}{pad}{inner}{pad}{ticks}")
        else:
            opening, closing = _CANONICAL[mark]
            out.append(f"{opening}{_spans(inner)}{closing}")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def body_of(out: Outbound, text: str | None = None) -> str:
    """The body of the bridge's message for ``out`` (``text``: canonical text instead of
    the part's): the author, then the text; a link a platform gave for a file whose
    bytes are not kept ends the last part."""
    m = out.message
    nick = one_line(m.author.name)
    prefix = {
        Kind.ACTION: f"* {nick} ",
        Kind.JOIN: f"* {nick} ",
        Kind.PART: f"* {nick} ",
        Kind.TOPIC: f"* {nick} changed the topic to: ",
    }.get(m.kind, one_line(out.display_name))
    body = to_body(out.text if text is None else text)
    if out.part == out.parts - 1:
        body += "".join(f"\n{a.name or 'file'}: {a.url}" for a in m.attachments
                        if a.url and not a.sha256 and not a.note)
    return xml_safe(prefix + body)
