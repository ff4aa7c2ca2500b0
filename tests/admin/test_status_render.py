"""The status page's HTML with hostile names, and the per-minute rates."""

from __future__ import annotations

from typing import Any

from roomlink.admin import status
from roomlink.admin.page import render_page

HOSTILE = '<img src=x onerror="alert(1)">{{rooms}}'


def snapshot(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "0", "time": "t", "config": "/c.yaml", "loaded_at": "t",
        "connectors": [{"name": HOSTILE, "type": "irc", "party": "p", "connected": False,
                        "since": "t", "last_error": HOSTILE, "last_error_at": "t",
                        "rooms": [HOSTILE], "waiting": 2, "details": {"peer key": HOSTILE}}],
        "pipes": [{"name": "main", "parties": ["p"], "rooms": [f"irc:{HOSTILE}"],
                   "pending": 0, "failed": 1}],
        "rooms": [{"pipe": "main", "connector": "irc", "room": HOSTILE, "party": "p",
                   "direction": "inout", "ready": False, "pending": 0, "failed": 1,
                   "last_delivery": None, "last_error": HOSTILE}],
        "stores": [{"party": "p", "store": "sqlite:///p.db", "messages": 1, "pending": 0,
                    "delivered": 0, "failed": 1, "size_bytes": 4096,
                    "chain_heads": [{"pipe": "main", "n": 1, "head": "ab" * 32}]}],
        "rates": {"minutes": 3, "ingested": [None, 2, 5], "delivered": [None, 1, 5],
                  "failed": [None, 0, 1]},
        "failures": [{"party": "p", "id": "m1", "pipe": "main", "connector": "irc",
                      "room": HOSTILE, "attempts": 8, "error": HOSTILE, "at": "t"}],
    }
    base.update(over)
    return base


def test_names_and_errors_from_outside_are_shown_inert() -> None:
    page = render_page(snapshot())
    assert "<img" not in page and 'onerror="' not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;{{rooms}}" in page
    assert page.count("<tr") > 5  # the tables are filled in, not only by the script
    assert "main #1 abababababab" in page
    assert "5 in the last minute" in page and "4.0 kB" in page


def test_rates_per_minute_from_counter_samples(monkeypatch: Any) -> None:
    rates = status.Rates()
    # started 150 s ago; 10 messages a minute since then
    now = 10_000.0
    for t in range(0, 151, 5):
        n = t / 6
        rates.samples.append((now - 150 + t, n, n, 0.0))
    monkeypatch.setattr(rates, "sample", lambda: None)
    got = rates.per_minute()
    assert got["ingested"][-1] == 10 and got["ingested"][-2] == 10
    assert got["ingested"][-3] == 5  # the minute it started in counts from the start
    assert got["ingested"][:-3] == [None] * (status.RATE_MINUTES - 3)
