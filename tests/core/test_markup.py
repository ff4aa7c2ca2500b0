"""The canonical text form: what each platform's renderer turns it into."""

from __future__ import annotations

import pytest

from roomlink.message.markup import PLAIN, Style, escape, render, to_plain

SLACKISH = Style(bold=("*", "*"), italic=("_", "_"), strike=("~", "~"), code=("`", "`"),
                 code_block=("```\n", "\n```"), link=lambda text, href: f"<{href}|{text}>")


@pytest.mark.parametrize(
    "plain",
    [
        "2 * 3 * 4 = 24",
        "use `rm -rf` carefully_or_not",
        "# not a heading",
        "- not a list",
        "1. not a list either",
        "> not a quote",
        "<b>not html</b> & [not](a link)",
        "back\\slash ~~not struck~~",
        "@channel and <!here>",
    ],
)
def test_escaped_plain_text_renders_exactly_as_written(plain: str) -> None:
    assert to_plain(escape(plain)) == plain


def test_rendering_to_a_platform_style() -> None:
    canonical = "**bold** *it* ~~gone~~ `x = 1` [docs](https://e.org)"
    assert render(canonical, SLACKISH) == "*bold* _it_ ~gone~ `x = 1` <https://e.org|docs>"
    assert to_plain(canonical) == "bold it gone x = 1 docs (https://e.org)"


def test_blocks_quotes_lists_and_code() -> None:
    canonical = "intro\n\n> quoted\n\n- one\n- two\n\n```\ncode *not bold*\n```"
    assert to_plain(canonical) == "intro\n\n> quoted\n\n- one\n- two\n\ncode *not bold*"
    assert render(canonical, SLACKISH).endswith("```\ncode *not bold*\n```")


def test_unsupported_markdown_stays_literal() -> None:
    assert to_plain("# title") == "# title"
    assert to_plain("<script>alert(1)</script>") == "<script>alert(1)</script>"
    assert to_plain("![img](http://x/y.png)") == "!img (http://x/y.png)"  # its link


def test_plain_style_is_the_default() -> None:
    assert render("**a**", PLAIN) == "a"


def test_code_blocks_go_through_the_platform_escaping() -> None:
    html = Style(code_block=("<pre>", "</pre>"),
                 text=lambda s: s.replace("&", "&amp;").replace("<", "&lt;"))
    assert render("```\n<script>&\nx\n```", html) == "<pre>&lt;script>&amp;\nx</pre>"
