"""Slack mrkdwn <-> canonical text, both directions; pure functions.

Slack's message text is mrkdwn with three HTML entities (``&amp; &lt; &gt;``) and control
sequences in angle brackets: ``<@U123>`` mentions, ``<#C123|name>`` channel links,
``<!here>`` pings, ``<url|label>`` links. Outbound, every ``&``, ``<`` and ``>`` of
relayed text is escaped, so relayed text can never form a control sequence (and ping
nobody); only the links roomlink writes itself are real ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from roomlink.message.markup import Style, escape, render

# -- canonical -> mrkdwn -------------------------------------------------------------------

_SAFE_SCHEMES = ("http://", "https://", "mailto:")


def escape_mrkdwn(text: str) -> str:
    """Literal text for Slack: the three characters Slack gives meaning to, as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def _link(label: str, href: str) -> str:
    if href.startswith("mailto:") and not _EMAIL.fullmatch(href[7:]) and "@" in label:
        # CommonMark reads <!subteam^S1|@team> as an e-mail autolink; it was text
        return f"&lt;{label}&gt;"
    if not href.lower().startswith(_SAFE_SCHEMES):
        return label if label == escape_mrkdwn(href) else f"{label} ({escape_mrkdwn(href)})"
    # '|' ends the URL part of a link: keep it out of the address
    target = escape_mrkdwn(href).replace("|", "%7C")
    return f"<{target}>" if label == escape_mrkdwn(href) else f"<{target}|{label}>"


MRKDWN = Style(
    bold=("*", "*"),
    italic=("_", "_"),
    strike=("~", "~"),
    code=("`", "`"),
    code_block=("```\n", "\n```"),
    quote="> ",
    bullet="• ",
    link=_link,
    text=escape_mrkdwn,
)


def to_mrkdwn(canonical: str) -> str:
    """Canonical text as Slack mrkdwn; no control sequence survives from the text."""
    return render(canonical, MRKDWN)


# -- mrkdwn -> canonical -------------------------------------------------------------------

_CONTROL = re.compile(r"<([^<>\n]*)>")
_FENCE = re.compile(r"```\n?(.*?)\n?```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_HOLE = re.compile(r"\x00(\d+)\x00")
# emphasis on the escaped text: a marker at a word edge, not touching whitespace inside
_EMPHASIS = [
    (re.compile(r"(?<![\w\\])\\\*(?=\S)(.+?)(?<=\S)(?<!\\)\\\*(?!\w)"), "**", "**"),
    (re.compile(r"(?<![\w\\])\\_(?=\S)(.+?)(?<=\S)(?<!\\)\\_(?!\w)"), "*", "*"),
    (re.compile(r"(?<![\w\\])\\~(?=\S)(.+?)(?<=\S)(?<!\\)\\~(?!\w)"), "~~", "~~"),
]
_QUOTE = re.compile(r"^\\>[ ]?", re.MULTILINE)
_QUOTE_END = re.compile(r"^(> .*\n)(?!> )", re.MULTILINE)
_SPECIAL_PINGS = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}

Names = Mapping[str, str]


def unescape_mrkdwn(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mentioned_users(mrkdwn: str) -> list[str]:
    """The user ids ``<@U123>`` mentions name, to look up before :func:`to_canonical`."""
    return [m.group(1)[1:].split("|", 1)[0] for m in _CONTROL.finditer(mrkdwn)
            if m.group(1).startswith("@")]


def to_canonical(mrkdwn: str, users: Names | None = None, channels: Names | None = None) -> str:
    """Slack message text as canonical text.

    ``users`` and ``channels`` map ids to display names for mentions that carry no label.
    """
    users, channels = users or {}, channels or {}
    holes: list[str] = []

    def hole(canonical: str) -> str:
        holes.append(canonical)
        return f"\x00{len(holes) - 1}\x00"

    text = mrkdwn.replace("\x00", "")
    text = _FENCE.sub(lambda m: hole(_fence(unescape_mrkdwn(m.group(1)))), text)
    text = _CODE.sub(lambda m: hole(_inline_code(unescape_mrkdwn(m.group(1)))), text)
    text = _CONTROL.sub(lambda m: hole(_control(m.group(1), users, channels)), text)
    text = escape(unescape_mrkdwn(text))
    text = _QUOTE.sub("> ", text)
    # a Slack quote ends with its line; in canonical text the next line would continue it
    text = _QUOTE_END.sub("\\1\n", text)
    for pattern, opening, closing in _EMPHASIS:
        text = pattern.sub(opening + r"\1" + closing, text)
    # holes may hold holes (none do today), so substitute until none is left
    return _HOLE.sub(lambda m: holes[int(m.group(1))], text)


def _fence(code: str) -> str:
    ticks = "```"
    while ticks in code:
        ticks += "`"
    return f"\n{ticks}\n{code}\n{ticks}\n"


def _inline_code(code: str) -> str:
    ticks = "``" if "`" in code else "`"
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{ticks}{pad}{code}{pad}{ticks}"


def _control(body: str, users: Names, channels: Names) -> str:
    target, _, label = body.partition("|")
    label = unescape_mrkdwn(label)
    if target.startswith("@"):
        uid = target[1:]
        return escape("@" + (label or users.get(uid) or uid))
    if target.startswith("#"):
        cid = target[1:]
        return escape("#" + (label or channels.get(cid) or cid))
    if target.startswith("!"):
        command = target[1:]
        if command in _SPECIAL_PINGS:
            return escape(_SPECIAL_PINGS[command])
        # <!subteam^ID|@team>, <!date^...|fallback>: the label is what users read
        return escape(label or command.split("^", 1)[0])
    url = unescape_mrkdwn(target)
    if not url.lower().startswith(_SAFE_SCHEMES):
        return escape(label or url)
    if not label or label == url or (url.startswith("mailto:") and label == url[7:]):
        return f"<{_autolink_safe(url)}>" if url.startswith("http") else _md_link(label, url)
    return _md_link(label, url)


def _autolink_safe(url: str) -> str:
    return url.replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")


def _md_link(label: str, url: str) -> str:
    href = url.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
    return f"[{escape(label or url)}]({href})"


def display_name(user: Mapping[str, object]) -> str:
    """The name Slack shows for a user: profile display name, else real name, else handle."""
    profile = user.get("profile")
    prof: Mapping[str, object] = profile if isinstance(profile, Mapping) else {}
    for value in (prof.get("display_name"), prof.get("real_name"), user.get("real_name"),
                  user.get("name"), user.get("id")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "unknown"


def avatar(user: Mapping[str, object]) -> str | None:
    profile = user.get("profile")
    if isinstance(profile, Mapping):
        for key in ("image_192", "image_72", "image_48"):
            value = profile.get(key)
            if isinstance(value, str) and value.startswith("https://"):
                return value
    return None

