"""The IRC line builder: rendering, sanitising, byte budgets, UTF-8 boundaries."""

from __future__ import annotations

import pytest
from roomlink_connectors.irc.lines import (
    ASSUMED_HOST_LENGTH,
    BOLD,
    ITALIC,
    MONO,
    TRUNCATED,
    ZWJ,
    no_ping,
    prefix_length,
    render_irc,
    split_lines,
    strip_formatting,
    to_canonical,
)

from roomlink.message.markup import escape


def lines_of(canonical: str, budget: int = 100, max_lines: int = 100, prefix: str = "<a> ",
             formatting: str = "codes") -> list[str]:
    return split_lines(render_irc(canonical, formatting), prefix, budget, max_lines)


def test_formatting_codes_and_plain() -> None:
    text = "**bold** *it* `x = 1` ~~gone~~ [docs](https://e.org/) <https://e.org/a>"
    assert render_irc(text, "codes") == (
        f"{BOLD}bold{BOLD} {ITALIC}it{ITALIC} {MONO}x = 1{MONO} \x1egone\x1e "
        "docs (https://e.org/) https://e.org/a"
    )
    assert render_irc(text, "plain") == "bold it x = 1 gone docs (https://e.org/) https://e.org/a"
    assert render_irc("a\n\nb", "codes") == "a\nb"  # no blank lines: IRC cannot send them


@pytest.mark.parametrize("evil", ["\r\nQUIT :bye", "\nQUIT", "\rQUIT", "x\x00QUIT",
                                  "\x01ACTION fake\x01", "\u2028QUIT"])
def test_no_control_character_reaches_a_line(evil: str) -> None:
    for canonical in (escape(evil), evil, f"**{evil}**", f"`{evil}`", f"[{evil}](http://x)"):
        lines = lines_of(canonical, prefix="<m\r\nQUIT> ")
        assert lines, canonical
        for line in lines:
            assert not set(line) & {"\r", "\n", "\x00", "\x01"}, (canonical, line)
        assert "QUIT" in "".join(lines)  # the text itself is kept, only defanged


def test_split_respects_byte_budget_and_utf8_boundaries() -> None:
    words = " ".join(f"wörd{i}€😀" for i in range(300))
    for budget in (40, 41, 42, 43, 97, 300):
        lines = lines_of(escape(words), budget=budget, max_lines=10_000)
        for line in lines:
            assert len(line.encode("utf-8")) <= budget
            assert line.startswith("<a> ")
        body = " ".join(line.removeprefix("<a> ") for line in lines)
        assert body == words  # split on spaces: nothing lost, nothing added


def test_a_word_longer_than_a_line_is_cut_between_characters() -> None:
    word = "€" * 200 + "😀" * 50
    lines = lines_of(escape(word), budget=61)
    assert all(len(line.encode()) <= 61 for line in lines)
    assert "".join(line.removeprefix("<a> ") for line in lines) == word


def test_multi_line_text_keeps_its_lines_and_order() -> None:
    lines = lines_of("one\ntwo\n\nthree")
    assert lines == ["<a> one", "<a> two", "<a> three"]


def test_max_lines_cuts_with_a_marker() -> None:
    text = "\n".join(f"line {i}" for i in range(10))
    lines = lines_of(text, max_lines=3)
    assert len(lines) == 3
    assert lines[:2] == ["<a> line 0", "<a> line 1"]
    assert lines[2].startswith("<a> line 2") and lines[2].endswith(TRUNCATED)
    long = lines_of(escape("x" * 1000), budget=80, max_lines=2)
    assert len(long) == 2 and long[1].endswith(TRUNCATED)
    assert all(len(line.encode()) <= 80 for line in long)


def test_formatting_is_reopened_on_a_continuation_line() -> None:
    lines = lines_of("**" + " ".join(["bold"] * 30) + "** after", budget=40)
    assert len(lines) > 2
    for line in lines[1:-1]:
        assert line.startswith("<a> " + BOLD)
    # the closing code sits on the last line, which must have bold open before it
    last = lines[-1].removeprefix("<a> ")
    assert last.startswith(BOLD) and last.endswith(BOLD + " after")


def test_code_block_is_monospace_on_every_line() -> None:
    lines = lines_of("```\nx = 1\ny = 2\n```")
    assert lines == [f"<a> {MONO}x = 1", f"<a> {MONO}y = 2{MONO}"]


def test_no_ping_inserts_a_zero_width_joiner() -> None:
    assert no_ping("<alice> ", "alice") == f"<a{ZWJ}lice> "
    assert no_ping("<x> ", "x") == "<x> "  # one letter: nothing to split


def test_prefix_length_assumes_a_long_host_until_known() -> None:
    unknown = prefix_length("bot", None, None, "#c")
    assert unknown == len(":bot!~bot@ PRIVMSG #c :") + ASSUMED_HOST_LENGTH
    assert prefix_length("bot", "~bot", "127.0.0.1", "#c") == len(
        ":bot!~bot@127.0.0.1 PRIVMSG #c :")


def test_inbound_formatting_to_canonical() -> None:
    assert to_canonical("plain *stars* _u_") == escape("plain *stars* _u_")
    assert to_canonical(f"a {BOLD}b{BOLD} {ITALIC}i {ITALIC}c") == "a **b** *i* c"
    assert to_canonical("\x0304,01red\x03 \x1funder\x1f") == "red under"
    assert strip_formatting(f"{BOLD}x\x0312y\x0f") == "xy"
