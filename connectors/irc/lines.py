"""Canonical text to IRC lines and back: rendering, sanitising, byte-exact splitting.

Every function here is pure, so the rules that keep a relayed message from injecting
an IRC command (no CR, LF or NUL ever reaches the wire) and from exceeding the 512-byte
line limit can be tested without a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from roomlink.message.markup import Style, escape, render

BOLD, ITALIC, MONO, STRIKE, UNDERLINE, RESET, COLOR, HEX_COLOR, REVERSE = (
    "\x02", "\x1d", "\x11", "\x1e", "\x1f", "\x0f", "\x03", "\x04", "\x16"
)
TOGGLES = (BOLD, ITALIC, MONO, STRIKE, UNDERLINE, REVERSE)
TRUNCATED = " [… message truncated]"
ZWJ = "\u200d"
LINE_LIMIT = 512  # bytes, CR LF included (RFC 1459 / 2812)
ASSUMED_HOST_LENGTH = 63  # what a server may show for us until it tells us the real host

# C0 controls and DEL: what another platform's text must never smuggle in. Formatting
# codes are re-added by the renderer only, so its state tracking stays exact.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_COLOR_CODE = re.compile(r"\x03(\d{1,2}(,\d{1,2})?)?|\x04([0-9a-fA-F]{6}(,[0-9a-fA-F]{6})?)?")


def strip_controls(text: str) -> str:
    """``text`` with every control character removed (tabs become spaces)."""
    return _CONTROLS.sub("", text.replace("\t", " "))


def _link(text: str, href: str) -> str:
    href = strip_controls(href)
    return text if text == href or not href else f"{text} ({href})"


CODES = Style(
    bold=(BOLD, BOLD),
    italic=(ITALIC, ITALIC),
    strike=(STRIKE, STRIKE),
    code=(MONO, MONO),
    code_block=(MONO, MONO),
    link=_link,
    text=strip_controls,
    paragraph_sep="\n",
)
PLAIN = Style(link=_link, text=strip_controls, paragraph_sep="\n")


_CR = re.compile(r"\r\n?")


def render_irc(canonical: str, formatting: str = "codes") -> str:
    """IRC text for canonical text; lines separated by LF, no other control but formatting.

    Canonical text breaks lines with LF alone; a CR is what a line smuggled into a
    message looks like, so it stays on its line as a space.
    """
    canonical = _CR.sub(" ", canonical).replace("\x00", "")
    return render(canonical, CODES if formatting == "codes" else PLAIN)


def no_ping(display: str, nick: str) -> str:
    """``display`` with a zero-width joiner inside ``nick``: IRC clients highlight on the
    exact nick, so a relayed author never pings a local user of the same name."""
    if len(nick) < 2 or nick not in display:
        return display
    return display.replace(nick, nick[0] + ZWJ + nick[1:])


def prefix_length(nick: str, user: str | None, host: str | None, target: str) -> int:
    """Bytes of ``:nick!user@host PRIVMSG target :`` as the server relays our line."""
    user_len = len((user or "~" + nick[:10]).encode())
    host_len = len(host.encode()) if host else ASSUMED_HOST_LENGTH
    return len(f":{nick}!@ PRIVMSG {target} :".encode()) + user_len + host_len


@dataclass(slots=True)
class _State:
    """Which formatting toggles are on; a continuation line must reopen them."""

    on: dict[str, bool]

    @classmethod
    def off(cls) -> _State:
        return cls({code: False for code in TOGGLES})

    def feed(self, text: str) -> None:
        for ch in text:
            if ch in self.on:
                self.on[ch] = not self.on[ch]
            elif ch == RESET:
                self.on = {code: False for code in TOGGLES}

    def opening(self) -> str:
        return "".join(code for code, on in self.on.items() if on)


def _fit(text: str, budget: int) -> int:
    """How many characters of ``text`` fit in ``budget`` UTF-8 bytes."""
    used = 0
    for i, ch in enumerate(text):
        used += len(ch.encode())
        if used > budget:
            return i
    return len(text)


def _wrap(text: str, budget: int) -> list[str]:
    """Cut one line into pieces of at most ``budget`` bytes, at spaces where possible,
    reopening the formatting that was on where a piece starts."""
    pieces: list[str] = []
    state = _State.off()
    rest = text
    while rest:
        opening = state.opening()
        room = budget - len(opening.encode())
        n = _fit(rest, room)
        if n >= len(rest):
            piece = rest
        else:
            space = rest.rfind(" ", 0, n + 1)
            cut = space if space > 0 else max(n, 1)
            piece = rest[:cut]
        rest = rest[len(piece):].lstrip(" ")
        state.feed(piece)
        piece = piece.rstrip(" ")
        if strip_formatting(piece).strip():
            pieces.append(opening + piece)
    return pieces


def split_lines(text: str, prefix: str, budget: int, max_lines: int) -> list[str]:
    """The PRIVMSG texts for ``prefix`` + ``text`` (IRC-rendered, LF between lines).

    Every result is at most ``budget`` bytes, holds no CR, LF or NUL, and starts with
    ``prefix`` (the author's name, so each line is attributed); past ``max_lines`` the
    rest is cut and the last line ends with a marker.
    """
    prefix = strip_controls(prefix)
    body_budget = budget - len(prefix.encode())
    if body_budget < 16:  # a pathological nick_format: drop it rather than send nothing
        prefix, body_budget = "", budget
    lines: list[str] = []
    state = _State.off()  # formatting may span a line break (a code block does)
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        raw = raw.replace("\x00", "")
        opening = state.opening()
        state.feed(raw)
        lines.extend(_wrap(opening + raw, body_budget))
    if not lines:
        return []
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        room = body_budget - len(TRUNCATED.encode()) - 1
        cut = _fit(last, room)
        kept = last[:cut].rstrip(" ")
        reset = RESET if kept != strip_formatting(kept) else ""  # the marker is unformatted
        lines = [*lines[: max_lines - 1], kept + reset + TRUNCATED]
    return [prefix + line for line in lines]


# -- inbound ---------------------------------------------------------------------------
def strip_formatting(text: str) -> str:
    """``text`` without IRC colour and formatting codes."""
    return _COLOR_CODE.sub("", text).translate({ord(c): None for c in (*TOGGLES, RESET)})


def to_canonical(text: str) -> str:
    """Canonical text for an IRC line: bold and italic kept, colours dropped, the rest
    escaped so that an IRC user's ``*stars*`` stay literal."""
    text = _COLOR_CODE.sub("", text)
    out: list[str] = []
    bold = italic = False
    run: list[str] = []

    def flush() -> None:
        chunk = strip_controls("".join(run))
        run.clear()
        if not chunk:
            return
        core = chunk.strip(" ")
        if not core or not (bold or italic):
            out.append(escape(chunk))
            return
        mark = ("**" if bold else "") + ("*" if italic else "")
        lead = chunk[: len(chunk) - len(chunk.lstrip(" "))]
        trail = chunk[len(chunk.rstrip(" ")):]
        out.append(f"{lead}{mark}{escape(core)}{mark[::-1]}{trail}")

    for ch in text:
        if ch in (BOLD, ITALIC, RESET):
            flush()
            if ch == BOLD:
                bold = not bold
            elif ch == ITALIC:
                italic = not italic
            else:
                bold = italic = False
        else:
            run.append(ch)
    flush()
    return "".join(out)
