"""mrkdwn <-> canonical text (connectors/slack/convert.py), hostile input included."""

from __future__ import annotations

import pytest
from roomlink_connectors.slack.convert import display_name, to_canonical, to_mrkdwn
from slackkit import pings

from roomlink.message.markup import escape, to_plain

USERS = {"U1": "Alice *A*", "U2": "bob"}
CHANNELS = {"C1": "general"}


@pytest.mark.parametrize(("mrkdwn", "canonical"), [
    ("*bold* _italic_ ~strike~ `co*de`", "**bold** *italic* ~~strike~~ `co*de`"),
    ("snake_case_name and 2*3*4", "snake\\_case\\_name and 2\\*3\\*4"),
    ("```\nif a &lt; b &amp;&amp; c:\n    x()\n```", "\n```\nif a < b && c:\n    x()\n```\n"),
    ("<https://example.org/?a=1&amp;b=2|the docs> <https://example.org>",
     "[the docs](https://example.org/?a=1&b=2) <https://example.org>"),
    ("<mailto:a@example.org|a@example.org>", "[a@example.org](mailto:a@example.org)"),
    ("hi <@U1> and <@U3|carol> in <#C1> and <#C2|random>",
     "hi @Alice \\*A\\* and @carol in \\#general and \\#random"),
    ("<!here> <!channel> <!everyone> <!subteam^S1|@devs>", "@here @channel @everyone @devs"),
    ("&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp;",
     "\\<script\\>alert(1)\\</script\\> \\&amp;"),
    ("&gt; quoted\nafter", "> quoted\n\nafter"),
    ("<javascript:alert(1)|click me>", "click me"),
    ("1. not a list\n# not a heading", "1\\. not a list\n\\# not a heading"),
    ("nul\x00byte", "nulbyte"),
])
def test_mrkdwn_to_canonical(mrkdwn: str, canonical: str) -> None:
    assert to_canonical(mrkdwn, USERS, CHANNELS) == canonical


def test_slack_mentions_become_plain_text() -> None:
    text = to_canonical("<!channel> <@U1> <!here>", USERS)
    assert to_plain(text) == "@channel @Alice *A* @here"
    # ... and, relayed back into Slack, they ping nobody
    assert pings({"text": to_mrkdwn(text)}) == []


@pytest.mark.parametrize(("canonical", "mrkdwn"), [
    ("**bold** *italic* ~~strike~~ `code`", "*bold* _italic_ ~strike~ `code`"),
    ("[docs](https://example.org/?a=1&b=2)", "<https://example.org/?a=1&amp;b=2|docs>"),
    ("<https://example.org>", "<https://example.org>"),
    ("[x](https://example.org/a|b)", "<https://example.org/a%7Cb|x>"),
    ("> quote\n\n- one\n- two", "> quote\n\n• one\n• two"),
    ("```\n<!channel> & <b>\n```", "```\n&lt;!channel&gt; &amp; &lt;b&gt;\n```"),
])
def test_canonical_to_mrkdwn(canonical: str, mrkdwn: str) -> None:
    assert to_mrkdwn(canonical) == mrkdwn


@pytest.mark.parametrize("hostile", [
    "<!channel> <!here> <!everyone> <@U0000001> <@W123|x> <!subteam^S1|@team>",
    "<#C123|general> <https://evil.example|https://good.example>",
    "&lt;!channel&gt; &amp;lt;",
    "`<!channel>` and ```<!here>```",
    "[<!channel>](https://example.org) [x](<!channel>)",
])
def test_relayed_text_can_never_form_a_control_sequence(hostile: str) -> None:
    for canonical in (hostile, escape(hostile)):
        out = to_mrkdwn(canonical)
        assert pings({"text": out}) == [], out
        # the only < a relayed text carries opens a link roomlink wrote itself
        assert all(part.startswith(("https://", "http://", "mailto:"))
                   for part in out.split("<")[1:]), out
    # plain text from another platform shows exactly as written (Slack has no escape for
    # backticks: literal ones show as code there)
    if "`" not in hostile:
        assert to_plain(to_canonical(to_mrkdwn(escape(hostile)))) == hostile


def test_display_name_prefers_profile_display_name() -> None:
    user = {"id": "U1", "name": "alice", "real_name": "Alice Example",
            "profile": {"display_name": "", "real_name": "Alice Example"}}
    assert display_name(user) == "Alice Example"
    user["profile"]["display_name"] = "ali"  # type: ignore[index]
    assert display_name(user) == "ali"
    assert display_name({"id": "U2", "name": "bob"}) == "bob"
