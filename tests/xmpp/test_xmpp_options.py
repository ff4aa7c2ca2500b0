"""The XMPP connector's options and room names, as an admin writes them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from roomlink_connectors.xmpp import XmppConnector
from roomlink_connectors.xmpp.options import XmppOptions


def test_defaults_come_from_the_jid() -> None:
    opts = XmppOptions(jid="roomlink@example.org", password="x")
    assert (opts.server, opts.effective_port, opts.tls, opts.tls_verify, opts.nick) == (
        None, 5222, "starttls", True, "roomlink")
    assert XmppOptions(jid="a@example.org", password="x", tls="direct").effective_port == 5223


@pytest.mark.parametrize("bad", [
    {"jid": "no-domain-part@", "password": "x"},
    {"jid": "example.org", "password": "x"},  # a server, not an account
    {"jid": "a@example.org", "password": "x", "tls": "ssl"},
    {"jid": "a@example.org", "password": "x", "nick": " padded"},
    {"jid": "a@example.org", "password": "x", "nick": "two\nlines"},
    {"jid": "a@example.org", "password": "x", "colour": "blue"},
])
def test_bad_options_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        XmppOptions(**bad)  # type: ignore[arg-type]


def test_room_names() -> None:
    assert XmppConnector.normalize_room(" Project@Conference.Example.org ") == (
        "project@conference.example.org")
    for bad in ("#channel", "project@conference.example.org/nick", "conference.example.org"):
        with pytest.raises(ValueError, match="multi-user chat room"):
            XmppConnector.normalize_room(bad)
