"""Telegram entities <-> canonical text, HTML rendering and splitting (convert.py).

Rendered HTML is checked with the test server's parser, which accepts only what
Telegram's ``parse_mode=HTML`` accepts."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from roomlink_connectors.telegram.convert import (
    compose,
    split_html,
    to_canonical,
    to_html,
    visible_length,
)
from tgkit import parse_html

from roomlink.message.markup import to_plain


@dataclass
class E:
    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None


@pytest.mark.parametrize(("text", "entities", "canonical"), [
    ("plain *not bold* [x](y) <b>", [], "plain \\*not bold\\* \\[x\\](y) \\<b\\>"),
    ("bold and italic", [E("bold", 0, 4), E("italic", 9, 6)], "**bold** and *italic*"),
    ("nested here", [E("bold", 0, 11), E("italic", 7, 4)], "**nested *here***"),
    ("spaces ", [E("bold", 0, 7)], "**spaces** "),
    ("a b", [E("strikethrough", 0, 3)], "~~a b~~"),
    ("run `x` now", [E("code", 4, 3)], "run `` `x` `` now"),
    ("see docs", [E("text_link", 4, 4, url="https://ex.com/a b")], "see docs"),
    ("see docs", [E("text_link", 4, 4, url="https://ex.com/(a)")],
     "see [docs](<https://ex.com/(a)>)"),
    ("bad link", [E("text_link", 4, 4, url="javascript:alert(1)")], "bad link"),
    ("go https://ex.com/x_y now", [E("url", 3, 18)], "go <https://ex.com/x_y> now"),
    ("ping @alice", [E("mention", 5, 6)], "ping @alice"),
    ("code:\nx = 1\n", [E("pre", 6, 6, language="python")], "code:\n```python\nx = 1\n```\n"),
    ("q\nquoted", [E("blockquote", 2, 6)], "q\n> quoted\n"),
    ("😀 bold", [E("bold", 3, 4)], "😀 **bold**"),
    ("half 😀", [E("bold", 0, 6)], "half 😀"),  # ends inside the emoji: ignored
    ("x", [E("bold", 5, 3)], "x"),  # outside the text: ignored
    ("ab cd", [E("bold", 0, 4), E("italic", 3, 2)], "**ab *c***d"),  # overlap clipped
])
def test_entities_to_canonical(text: str, entities: list[E], canonical: str) -> None:
    assert to_canonical(text, entities) == canonical


@pytest.mark.parametrize("text", [
    "2 * 3 = 6 and a_b_c", "<script>alert(1)</script> &amp; &lt;", "# heading?\n- list?\n1. no",
    "`tick` \\back\\slash", "> not a quote", "[a](b) ![c](d)", "~~no~~ **no** __no__",
])
def test_plain_text_survives_unchanged(text: str) -> None:
    assert to_plain(to_canonical(text, [])) == text


@pytest.mark.parametrize(("canonical", "html"), [
    ("a **b** *c* ~~d~~ `e<f>`", "a <b>b</b> <i>c</i> <s>d</s> <code>e&lt;f&gt;</code>"),
    ("<b>x</b> & <script>", "&lt;b&gt;x&lt;/b&gt; &amp; &lt;script&gt;"),
    ("[site](https://ex.com/?a=1&b=\"2\")",
     '<a href="https://ex.com/?a=1&amp;b=%222%22">site</a>'),
    ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),  # not a link: shown as is
    ("[x](ftp://ex.com/f)", "x (ftp://ex.com/f)"),  # only web, mail and tg links are links
    ("```\n<pre>&\n```", "<pre>&lt;pre&gt;&amp;</pre>"),
    ("[`code` link](https://ex.com)", '<a href="https://ex.com">code link</a>'),
])
def test_canonical_to_html(canonical: str, html: str) -> None:
    assert to_html(canonical) == html
    parse_html(html)  # Telegram would take it


def test_compose_puts_the_author_in_bold_on_one_line() -> None:
    assert compose("message", "alice", "alice", "hi") == "<b>alice</b>: hi"
    assert compose("message", "<al> ", "al", "hi") == "<b>&lt;al&gt;</b> hi"
    assert compose("message", "a\r\nBcc: x", "a", "hi") == "<b>a Bcc: x</b>: hi"
    assert compose("action", "alice", "alice", "waves") == "* <b>alice</b> waves"
    assert compose("join", "alice", "alice", "joined") == "<i><b>alice</b> joined</i>"
    with_file = compose("message", "bob", "bob", "see", [("https://f.ex/a.pdf", "a.pdf"),
                                                         ("tg-file:XYZ", "<x>.png")])
    assert with_file.endswith('📎 <a href="https://f.ex/a.pdf">a.pdf</a>\n📎 &lt;x&gt;.png '
                              "(tg-file:XYZ)")
    parse_html(with_file)


def _words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("seed", range(12))
def test_split_html_parts_are_balanced_short_and_lose_nothing(seed: int) -> None:
    rng = random.Random(seed)
    pieces = []
    for i in range(rng.randint(200, 1500)):
        word = rng.choice(["word", "<&>", "😀x", "naïve", "a" * rng.randint(1, 30)]) + str(i)
        style = rng.random()
        if style < 0.1:
            word = f"**{word} bold**"
        elif style < 0.15:
            word = f"[{word}](https://ex.com/{i})"
        elif style < 0.18:
            word = f"`{word}`"
        pieces.append(word)
        if rng.random() < 0.05:
            pieces.append("\n")
    canonical = " ".join(pieces)
    if seed % 3 == 0:
        canonical = f"```\n{canonical}\n```"  # one huge code block, cut with <pre> reopened
    limit = rng.choice([50, 300, 4096])
    html = compose("message", "bob", "bob", canonical)
    parts = split_html(html, limit)
    texts = []
    for part in parts:
        text, _ = parse_html(part)  # raises on unbalanced or broken HTML
        assert 0 < visible_length(part) <= limit
        assert len(text.encode("utf-16-le")) // 2 <= limit
        texts.append(text)
    whole, _ = parse_html(html)
    assert _words(" ".join(texts)) == _words(whole) or "".join(texts).replace(
        " ", "").replace("\n", "") == whole.replace(" ", "").replace("\n", "")


def test_split_prefers_word_boundaries_and_never_splits_a_character() -> None:
    html = " ".join(["word"] * 3000)
    parts = split_html(html, 4096)
    assert all(p.split(" ")[-1] == "word" for p in parts)
    assert sum(len(p.split()) for p in parts) == 3000
    emoji = "😀" * 3000  # two UTF-16 units each, no space anywhere: a hard cut
    parts = split_html(emoji, 4096)
    assert [len(p) for p in parts] == [2048, 952]


def test_rooms_are_chat_ids_or_usernames() -> None:
    from roomlink_connectors.telegram import TelegramConnector as T

    assert T.normalize_room(" -1001234567890 ") == "-1001234567890"
    assert T.normalize_room("@Acme_News") == "@acme_news"
    for bad in ("#general", "acme", "@ab", "-100 123", ""):
        with pytest.raises(ValueError, match="chat id"):
            T.normalize_room(bad)
