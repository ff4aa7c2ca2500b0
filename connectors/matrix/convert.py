"""Matrix event content <-> canonical text, both directions, as pure functions.

Inbound, an ``m.room.message`` content becomes canonical text: its HTML
``formatted_body`` walked tag by tag (every text node escaped, so nothing in it turns
into markup by accident), or its plain ``body``; the reply fallback a client puts in
front (``<mx-reply>``, ``> <@user> ...`` lines) is cut off. Outbound, canonical text
becomes a ``body`` and an HTML ``formatted_body`` with the author's name in bold and
everything else escaped, and ``m.mentions: {}`` so that nothing relayed can ping anyone.
"""

from __future__ import annotations

import html
import re
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag

from roomlink.message.markup import escape, to_html, to_plain

HTML_FORMAT = "org.matrix.custom.html"
_SPACES = re.compile(r"\s+")
_LINK_SCHEMES = ("http://", "https://", "mailto:", "matrix:")
_BLOCKS = {"p", "div", "pre", "blockquote", "ul", "ol", "table", "hr",
           "h1", "h2", "h3", "h4", "h5", "h6"}
_WRAP = {"strong": "**", "b": "**", "em": "*", "i": "*", "del": "~~", "s": "~~",
         "strike": "~~"}


# -- inbound -------------------------------------------------------------------------------

def to_canonical(content: dict[str, Any]) -> str:
    """The canonical text of one message content (an event's, or an edit's new content)."""
    formatted = content.get("formatted_body")
    if content.get("format") == HTML_FORMAT and isinstance(formatted, str) and formatted:
        text = html_to_canonical(formatted)
        if text.strip():
            return text
    body = content.get("body")
    if not isinstance(body, str):
        return ""
    if _replies(content):
        body = strip_reply_fallback(body)
    return escape(body)


def _replies(content: dict[str, Any]) -> bool:
    relates = content.get("m.relates_to")
    return isinstance(relates, dict) and isinstance(relates.get("m.in_reply_to"), dict)


def strip_reply_fallback(body: str) -> str:
    """``body`` without the quoted lines a client puts before a reply's own text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> <"):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def html_to_canonical(fragment: str) -> str:
    soup = BeautifulSoup(fragment, "html.parser")
    for reply in soup.find_all("mx-reply"):  # the quoted message a reply carries
        reply.decompose()
    return _tidy(_children(soup, pre=False))


_FENCED = re.compile(r"(\n(?:```|~~~)\n.*?\n(?:```|~~~)\n)", re.DOTALL)


def _tidy(text: str) -> str:
    """Blank lines and the spaces around line breaks that HTML layout left, gone (code
    blocks, the odd parts of the split, keep theirs)."""
    parts = _FENCED.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"[ \t]*\n[ \t]*", "\n", parts[i])
    return re.sub(r"\n{3,}", "\n\n", "".join(parts)).strip()


def _children(node: Tag, pre: bool) -> str:
    return "".join(_node(child, pre) for child in node.children)


def _node(node: Any, pre: bool) -> str:
    if isinstance(node, NavigableString):
        text = str(node)
        if pre:
            return text
        return escape(_SPACES.sub(" ", text))
    if not isinstance(node, Tag):
        return ""
    name = node.name.lower()
    if name in ("script", "style", "head", "title"):
        return ""
    if name == "br":
        return "\n"
    if name in _WRAP:
        inner = _children(node, pre).strip()
        mark = _WRAP[name]
        return f"{mark}{inner}{mark}" if inner else ""
    if name == "code" and not pre:
        return _inline_code(node.get_text())
    if name == "pre":
        code = node.get_text().rstrip("\n")
        fence = "~~~" if "```" in code else "```"
        return f"\n\n{fence}\n{code}\n{fence}\n\n"
    if name == "a":
        return _link(node, pre)
    if name == "img":
        alt = str(node.get("alt") or node.get("title") or "image")
        return escape(alt)
    if name == "blockquote":
        inner = _tidy(_children(node, pre))
        quoted = "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
        return f"\n\n{quoted}\n\n"
    if name in ("ul", "ol"):
        return f"\n\n{_list(node, ordered=name == 'ol')}\n\n"
    if name in ("h1", "h2", "h3", "h4", "h5", "h6"):
        inner = _tidy(_children(node, pre))
        return f"\n\n**{inner}**\n\n" if inner else ""
    if name == "hr":
        return "\n\n"
    inner = _children(node, pre)
    return f"\n\n{inner}\n\n" if name in _BLOCKS else inner


def _inline_code(code: str) -> str:
    code = _SPACES.sub(" ", code)
    ticks = "`"
    while ticks in code:
        ticks += "`"
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{ticks}{pad}{code}{pad}{ticks}" if code.strip() else ""


def _link(node: Tag, pre: bool) -> str:
    label = _children(node, pre).strip()
    href = str(node.get("href") or "").strip()
    if not href.lower().startswith(_LINK_SCHEMES):
        return label  # a pill with a relative href, javascript:, ...: just its text
    if href.startswith("https://matrix.to/#/"):
        return label  # a mention pill: the name is what readers elsewhere need
    target = href.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
    if not label or label == escape(href):
        return f"<{target}>"
    return f"[{label}]({target})"


def _list(node: Tag, ordered: bool) -> str:
    lines: list[str] = []
    start = node.get("start")
    number = int(str(start)) if ordered and str(start or "").isdigit() else 1
    for item in node.find_all("li", recursive=False):
        inner = _tidy(_children(item, pre=False)).split("\n")
        marker = f"{number}. " if ordered else "- "
        number += 1
        lines.append(marker + inner[0])
        lines.extend(" " * len(marker) + line for line in inner[1:])
    return "\n".join(lines)


# -- outbound ------------------------------------------------------------------------------

def one_line(name: str) -> str:
    """An author name on one line: a relayed name never spills onto a line of its own."""
    return " ".join(name.split()) or "?"


def _html_fragment(canonical: str) -> tuple[str, bool]:
    """The canonical text as HTML, and whether it is one paragraph (then unwrapped)."""
    rendered = to_html(canonical).strip()
    if rendered.startswith("<p>") and rendered.endswith("</p>") and rendered.count("<p>") == 1:
        return rendered[3:-4], True
    return rendered, False


def compose(action: bool, name: str, canonical: str,
            attachments: list[tuple[str, str | None]] | None = None) -> dict[str, Any]:
    """The content of one relayed message: the author in bold, the text escaped."""
    name = one_line(name)
    plain = to_plain(canonical)
    fragment, inline = _html_fragment(canonical)
    bold = f"<strong>{html.escape(name)}</strong>"
    if action:
        body = f"* {name} {plain}"
        formatted = f"* {bold} {fragment}" if inline else f"<p>* {bold}</p>{fragment}"
    else:
        body = f"{name}: {plain}"
        formatted = f"{bold}: {fragment}" if inline else f"<p>{bold}:</p>{fragment}"
    for url, label in attachments or ():
        body += f"\n{label or 'file'}: {url}"
        formatted += f"<br>{html.escape(label or 'file')}: {html.escape(url)}"
    return {"msgtype": "m.text", "body": body, "format": HTML_FORMAT,
            "formatted_body": formatted, "m.mentions": {}}


def edit_content(new: dict[str, Any], target: str) -> dict[str, Any]:
    """An ``m.replace`` edit of ``target`` to ``new`` (clients without edits see ``* ...``)."""
    return {"msgtype": new["msgtype"], "body": "* " + new["body"], "format": HTML_FORMAT,
            "formatted_body": "* " + new["formatted_body"], "m.mentions": {},
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}
