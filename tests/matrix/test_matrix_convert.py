"""Matrix content <-> canonical text (connectors/matrix/convert.py, inbound.py), hostile
input included."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup
from mxpeer import assert_inert, shown
from roomlink_connectors.matrix.convert import compose, edit_content, to_canonical
from roomlink_connectors.matrix.inbound import events

from roomlink.message.markup import escape
from roomlink.message.model import Kind

HTML = "org.matrix.custom.html"


def html(formatted: str, body: str = "fallback") -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, "format": HTML, "formatted_body": formatted}


@pytest.mark.parametrize(("formatted", "canonical"), [
    ("<strong>bold</strong> and <em>it</em>", "**bold** and *it*"),
    ("<del>gone</del> <code>x*y</code>", "~~gone~~ `x*y`"),
    ('<a href="https://example.org/a_(b)">site</a>', "[site](https://example.org/a_%28b%29)"),
    ('<a href="javascript:alert(1)">click</a>', "click"),
    ('<a href="https://matrix.to/#/@bob:example.org">Bob</a>: hi', "Bob: hi"),
    ("line one<br>line two", "line one\nline two"),
    ("<blockquote>quoted</blockquote><p>answer</p>", "> quoted\n\nanswer"),
    ("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
    ("<pre><code>a &lt; b\n  c</code></pre>", "```\na < b\n  c\n```"),
    ("<mx-reply><blockquote>old</blockquote></mx-reply>new", "new"),
])
def test_html_in(formatted: str, canonical: str) -> None:
    assert to_canonical(html(formatted)) == canonical


def test_literal_markup_in_html_stays_text() -> None:
    # what a user typed literally (escaped by their client) never becomes markup here
    text = to_canonical(html("**not bold** &lt;b&gt;x&lt;/b&gt; [a](https://evil) _u_"))
    assert text == escape("**not bold** <b>x</b> [a](https://evil) _u_")


def test_plain_body_and_reply_fallback() -> None:
    assert to_canonical({"msgtype": "m.text", "body": "*not* <b>"}) == escape("*not* <b>")
    reply = {"msgtype": "m.text", "body": "> <@a:x> old\n> more\n\nthe answer",
             "m.relates_to": {"m.in_reply_to": {"event_id": "$old"}}}
    assert to_canonical(reply) == "the answer"


def _event(content: dict[str, Any], sender: str = "@alice:x", kind: str = "m.room.message",
           **extra: Any) -> dict[str, Any]:
    return {"type": kind, "sender": sender, "event_id": "$ev", "content": content,
            "origin_server_ts": 1_700_000_000_000, **extra}


def test_inbound_kinds() -> None:
    def name(user: str) -> str:
        return "Alice <b>A.</b>"

    [msg] = events("!r:x", _event({"msgtype": "m.text", "body": "hi"}), "@bot:x", name)
    assert (msg.kind, msg.text, msg.author.name, msg.native_id) == (
        Kind.MESSAGE, "hi", "Alice <b>A.</b>", "$ev")
    [emote] = events("!r:x", _event({"msgtype": "m.emote", "body": "waves"}), "@bot:x", name)
    assert emote.kind is Kind.ACTION
    edit = _event({"msgtype": "m.text", "body": "* fixed", "m.new_content":
                   {"msgtype": "m.text", "body": "fixed"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}})
    [changed] = events("!r:x", edit, "@bot:x", name)
    assert (changed.kind, changed.text, changed.target_native) == (Kind.EDIT, "fixed", "$orig")
    [gone] = events("!r:x", _event({}, kind="m.room.redaction", redacts="$orig"), "@bot:x",
                    name)
    assert (gone.kind, gone.target_native) == (Kind.DELETE, "$orig")
    # our own events are never relayed back
    assert events("!r:x", _event({"msgtype": "m.text", "body": "hi"}, sender="@bot:x"),
                  "@bot:x", name) == []
    join = _event({"membership": "join", "displayname": "Carol"}, kind="m.room.member",
                  state_key="@carol:x")
    [joined] = events("!r:x", join, "@bot:x", name)
    assert (joined.kind, joined.author.name) == (Kind.JOIN, "Carol")


HOSTILE = ["<a href='https://evil.example'>x</a> @room @everyone",
           "<script>alert(1)</script> &amp; &lt;b&gt;", "**bold?** [link](https://x.y)"]


@pytest.mark.parametrize("text", HOSTILE)
def test_outbound_escapes_everything_but_the_name(text: str) -> None:
    author = "Mallory\n<b>@room</b> <a href='https://evil'>boss</a>"
    content = compose(False, author, escape(text))
    name, shown_text = shown(content)
    assert name == "Mallory <b>@room</b> <a href='https://evil'>boss</a>"
    assert shown_text == text
    assert_inert(content, name, text)
    assert content["body"] == f"{name}: {text}"


def test_outbound_formatting_and_edit() -> None:
    content = compose(False, "bob", "**bold** and `code`")
    soup = BeautifulSoup(content["formatted_body"], "html.parser")
    assert [t.name for t in soup.find_all(True)] == ["strong", "strong", "code"]
    assert content["body"] == "bob: bold and code"
    action = compose(True, "bob", "waves")
    assert action["body"] == "* bob waves"
    edit = edit_content(content, "$target")
    assert edit["m.new_content"] == content
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$target"}
