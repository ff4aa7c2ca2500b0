"""Unit tests of the XMPP connector's conversions (convert.py) and stanza reading."""

from __future__ import annotations

import pytest
from roomlink_connectors.xmpp.convert import (
    needs_unstyled,
    one_line,
    to_body,
    to_canonical,
    xml_safe,
)
from roomlink_connectors.xmpp.inbound import read
from slixmpp import Message
from slixmpp.xmlstream import ET

from roomlink.message.markup import escape, to_plain

ROOM = "project@conference.example.org"


@pytest.mark.parametrize(("body", "canonical"), [
    ("*bold* _it_ ~gone~ `co*de`", "**bold** *it* ~~gone~~ `co*de`"),
    ("*bold _and it_*", "**bold *and it***"),
    ("> a quote\nafter", "> a quote\n\nafter"),
    ("```\nlet *x* = 1\n```", "```\nlet *x* = 1\n```"),
    ("2*3*4, a * b *, snake_case_name", r"2\*3\*4, a \* b \*, snake\_case\_name"),
    ("<b>not html</b> &amp; [x](y)", r"\<b\>not html\</b\> \&amp; \[x\](y)"),
    ("# not a heading\n- not a list", "\\# not a heading\n\\- not a list"),
])
def test_styling_to_canonical(body: str, canonical: str) -> None:
    assert to_canonical(body) == canonical
    # what comes in as text shows as the same text on every other platform
    assert to_plain(to_canonical(body)).replace("\n\n", "\n") == to_plain(canonical).replace(
        "\n\n", "\n")


def test_unstyled_bodies_are_plain_text() -> None:
    assert to_canonical("*not bold*", styled=False) == escape("*not bold*")


@pytest.mark.parametrize(("canonical", "body", "unstyled"), [
    ("**strong** *em* ~~gone~~ `code`", "*strong* _em_ ~gone~ `code`", False),
    ("[a link](https://example.org)", "a link (https://example.org)", True),
    (escape("2*3*4 <script>"), "2*3*4 <script>", True),
])
def test_canonical_to_styling(canonical: str, body: str, unstyled: bool) -> None:
    assert to_body(canonical) == body
    assert needs_unstyled(canonical) is unstyled


def test_hostile_characters() -> None:
    assert xml_safe("a\x00b\x1bc\ufffe") == "a\ufffdb\ufffdc\ufffd"  # XML cannot hold them
    assert one_line("mallory\r\nBcc: x\u2028<boss>") == "mallory Bcc: x <boss>"


def stanza(xml: str) -> Message:
    return Message(xml=ET.fromstring(xml))


def test_reading_a_reply_strips_its_quote_and_names_the_room_id() -> None:
    said = read(stanza(
        f"<message xmlns='jabber:client' type='groupchat' from='{ROOM}/alice' id='m2'>"
        "<body>&gt; bob: question\nthe answer</body>"
        "<reply xmlns='urn:xmpp:reply:0' to='x' id='room-id-1'/>"
        "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>"
        "<body start='0' end='16'/></fallback>"
        f"<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='room-id-2'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='mallory@evil' id='forged'/></message>"),
        ROOM, None, None)
    assert (said.nick, said.text, said.reply_to) == ("alice", "the answer", "room-id-1")
    assert said.stanza_id == "room-id-2"  # only the room's own stanza id counts
    assert said.author == "nick:alice"


def test_reading_corrections_retractions_and_actions() -> None:
    correction = read(stanza(
        f"<message xmlns='jabber:client' type='groupchat' from='{ROOM}/alice' id='m3'>"
        "<body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='m1'/>"
        "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ-a'/></message>"),
        ROOM, "arch-3", None)
    assert (correction.kind, correction.replaces, correction.author) == ("edit", "m1",
                                                                         "occupant:occ-a")
    assert correction.stanza_id == "arch-3"
    retraction = read(stanza(
        f"<message xmlns='jabber:client' type='groupchat' from='{ROOM}/alice' id='m4'>"
        "<body>retracted</body><retract xmlns='urn:xmpp:message-retract:1' id='room-1'/>"
        "</message>"), ROOM, None, None)
    assert (retraction.kind, retraction.retracts) == ("delete", "room-1")
    action = read(stanza(
        f"<message xmlns='jabber:client' type='groupchat' from='{ROOM}/alice' id='m5'>"
        "<body>/me waves *hard*</body></message>"), ROOM, None, None)
    assert (action.kind, action.text) == ("action", "waves **hard**")
