"""The status page: ``templates/status.html`` filled with a status snapshot.

The server writes every table into the HTML itself (the page is useful without
scripts, and to ``curl``); the page's own script then polls ``/api/status`` and redraws
the same tables. Every value is escaped: room names and errors come from outside.
"""

from __future__ import annotations

import re
from functools import cache
from html import escape
from importlib.resources import files
from typing import Any

REFRESH_MS = 2000
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@cache
def _template() -> str:
    return files("roomlink.admin").joinpath("templates/status.html").read_text(encoding="utf-8")


def _td(value: object, cls: str = "") -> str:
    text = "" if value is None else escape(str(value))
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _num(value: object, cls: str = "") -> str:
    return _td(value, f"num {cls}".strip())


def _size(n: int | None) -> str:
    if n is None:
        return ""
    value, unit = float(n), 0
    units = ("B", "kB", "MB", "GB", "TB")
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {units[unit]}"


# the page's script draws the tables again at once, with working buttons
RETRY = "<td><button>retry</button></td>"


def _connectors(status: dict[str, Any]) -> str:
    rows = []
    for c in status["connectors"]:
        state = _td("connected", "up") if c["connected"] else _td("down", "down")
        error = f"{c['last_error_at']} {c['last_error']}" if c["last_error"] else ""
        details = "  ".join(f"{k}: {v}" for k, v in c["details"].items())
        rows.append(f'<tr data-connector="{escape(c["name"])}">' + _td(c["name"]) + _td(c["type"])
                    + _td(c["party"]) + state + _td(c["since"]) + _num(c["waiting"])
                    + _td(details) + _td(error, "err") + "</tr>")
    return "".join(rows)


def _pipes(status: dict[str, Any]) -> str:
    return "".join(
        "<tr>" + _td(p["name"]) + _td(", ".join(p["parties"])) + _td("  ".join(p["rooms"]))
        + _num(p["pending"]) + _num(p["failed"], "failed" if p["failed"] else "") + "</tr>"
        for p in status["pipes"]
    )


def _rooms(status: dict[str, Any]) -> str:
    rows = []
    for r in status["rooms"]:
        ref = f"{r['connector']}:{r['room']}"
        if r["ready"] is None:
            ready = _td("—", "idle")
        elif r["ready"]:
            ready = _td("ready", "up")
        elif r.get("idle"):  # its normal state (nobody watches an API room): grey, not red
            ready = _td(r["idle"], "idle")
        else:
            ready = _td("waiting", "down")
        retry = RETRY if r["failed"] else "<td></td>"
        rows.append(f'<tr data-room="{escape(ref)}">' + _td(r["pipe"]) + _td(ref) + _td(r["party"])
                    + _td(r["direction"]) + ready + _num(r["pending"])
                    + _num(r["failed"], "failed" if r["failed"] else "")
                    + _td(r["last_delivery"]) + _td(r["last_error"], "err") + retry + "</tr>")
    return "".join(rows)


def _stores(status: dict[str, Any]) -> str:
    rows = []
    for s in status["stores"]:
        if "error" in s:
            rows.append("<tr>" + _td(s["party"]) + _td(s["store"]) + _td(s["error"], "err")
                        + "</tr>")
            continue
        rows.append("<tr>" + _td(s["party"]) + _td(s["store"]) + _num(_size(s.get("size_bytes")))
                    + _num(s.get("messages")) + _num(s.get("pending")) + _num(s.get("delivered"))
                    + _num(s.get("failed"), "failed" if s.get("failed") else "")
                    + _td(_heads(s.get("chain_heads", [])), "chain") + "</tr>")
    return "".join(rows)


def _heads(heads: list[dict[str, Any]]) -> str:
    return "  ".join(f"{h['pipe']} #{h['n']} {(h['head'] or '')[:12]}" for h in heads)


def _rates(status: dict[str, Any]) -> str:
    rows = []
    for key in ("ingested", "delivered", "failed"):
        values: list[int | None] = status["rates"][key]
        top = max([1, *(v for v in values if v is not None)])
        bars = "".join(
            '<span class="none" style="height:1px" title="not running"></span>' if v is None
            else f'<span style="height:{max(1, round(30 * v / top))}px" title="{v}/min"></span>'
            for v in values
        )
        last = values[-1] if values else None
        rows.append("<tr>" + _td(key) + f'<td><div class="bars">{bars}</div></td>'
                    + _num("" if last is None else f"{last} in the last minute") + "</tr>")
    return "".join(rows)


def _failures(status: dict[str, Any]) -> str:
    return "".join(
        "<tr>" + _td(f["at"]) + _td(f["party"]) + _td(f"{f['connector']}:{f['room']}")
        + _td(f["id"]) + _num(f["attempts"]) + _td(f["error"], "err")
        + RETRY + "</tr>"
        for f in status["failures"]
    )


def _replica(replica: dict[str, Any] | None) -> str:
    if not replica:
        return ""
    names = ", ".join(replica["connectors"]) or "no connector"
    return escape(f"· replica {replica['id']} runs {names}")


def render_page(status: dict[str, Any]) -> str:
    parts = {
        "version": escape(str(status["version"])),
        "config": escape(str(status["config"])),
        "loaded_at": escape(str(status["loaded_at"])),
        "replica": _replica(status.get("replica")),
        "time": escape(str(status["time"])),
        "minutes": str(status["rates"]["minutes"]),
        "refresh_ms": str(REFRESH_MS),
        "connectors": _connectors(status),
        "pipes": _pipes(status),
        "rooms": _rooms(status),
        "stores": _stores(status),
        "rates": _rates(status),
        "failures": _failures(status),
    }
    # one pass: a value that looks like a placeholder is not filled in again
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _template())
