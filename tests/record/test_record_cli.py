"""The party's record through the real ``roomlink`` commands, on the stores a real
conversation left: verify, digest, compare, tampering, signatures, search, retention."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from record.conftest import PARTIES, Conversation
from rlkit import run_cli, running, write_config


def _ok(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    done = run_cli(*args, env=env)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def _digest(c: Conversation, party: str, pipe: str = "project", *extra: str,
            env: dict[str, str] | None = None) -> str:
    return _ok("history", "digest", "-c", str(c.config), "--party", party, "--pipe", pipe,
               *extra, env=env).strip()


def test_every_party_holds_the_same_chain(conversation: Conversation) -> None:
    c = conversation
    heads = {}
    for party in PARTIES:
        out = _ok("history", "verify", "-c", str(c.config), "--party", party)
        found = re.search(r"^project: intact, (\d+) records, head ([0-9a-f]{64})$", out, re.M)
        assert found, out
        heads[party] = found.groups()
        if party != "contractor":
            assert re.search(r"^side: intact, 1 records, head [0-9a-f]{64}$", out, re.M), out
    # 7 records in project: 3 messages, an edit, a message, a delete, a message
    assert heads["agency"] == heads["acme"] == heads["contractor"] == (
        "7", heads["agency"][1])
    lines = {p: _digest(c, p) for p in PARTIES}
    assert lines["agency"] == lines["acme"] == lines["contractor"]
    assert lines["agency"] == (f"roomlink-digest/1 pipe=project count=7 last={c.ids['last']} "
                               f"head={heads['agency'][1]}")
    # as of an earlier message: equal too, and different from the head
    at = {p: _digest(c, p, "project", "--at", c.ids["reply"]) for p in PARTIES}
    assert at["agency"] == at["acme"] == at["contractor"] != lines["agency"]
    assert f" count=3 last={c.ids['reply']} " in at["agency"]
    assert _digest(c, "agency", "side") == _digest(c, "acme", "side")
    out = _ok("history", "compare", "-c", str(c.config), "--party", "agency", "--party", "acme")
    assert out.splitlines()[0].startswith("project: agree up to 7 messages"), out
    assert out.splitlines()[1].startswith("side: agree up to 1 messages"), out


def test_tampering_is_caught_located_and_shown_by_digest_and_compare(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation.copy_of(tmp_path / "c")
    before = _digest(c, "acme")
    c.sql("acme", f"UPDATE messages SET text = 'Договор не подписан' WHERE id = '{c.ids['ru']}'")
    out = _ok("history", "verify", "-c", str(c.config), "--party", "acme", code=1)
    assert f"project: BROKEN at position 2, message {c.ids['ru']}: altered" in out, out
    assert "side: intact" in out  # the other pipe is fine
    done = run_cli("history", "digest", "-c", str(c.config), "--party", "acme", "--pipe",
                   "project")
    assert done.returncode == 1 and "does not verify" in done.stderr
    assert done.stdout.strip() != before and done.stdout.strip().startswith("roomlink-digest/1")
    assert _digest(c, "agency") == before
    out = _ok("history", "compare", "-c", str(c.config), "--party", "agency", "--party", "acme",
              "--pipe", "project", code=1)
    assert out.strip() == (f"project: differ at position 2: different content of message "
                           f"{c.ids['ru']} (text differs)")
    # a row removed from contractor's store: a missing message, at the right place
    c.sql("contractor", f"DELETE FROM messages WHERE id = '{c.ids['reply']}'")
    out = _ok("history", "verify", "-c", str(c.config), "--party", "contractor", code=1)
    assert re.search(r"BROKEN at position 3, message \w+: removed", out), out
    out = _ok("history", "compare", "-c", str(c.config), "--party", "agency",
              "--party", "contractor", code=1)
    assert out.strip() == (f"project: differ at position 3: missing message: contractor has "
                           f"no message {c.ids['reply']}, which agency holds")


def test_signed_digest_verifies_and_a_changed_one_does_not(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation.copy_of(tmp_path / "c")
    keys = _ok("keygen")
    private = re.search(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----\n", keys, re.S)
    public = re.search(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----\n", keys, re.S)
    assert private and public
    (tmp_path / "agency.pub").write_text(public.group(0))
    cfg = c.config_dict(agency={"signing_key": "${AGENCY_SIGNING_KEY}"})
    write_config(c.config, cfg)
    env = {"AGENCY_SIGNING_KEY": private.group(0)}
    assert "ok" in _ok("check", "-c", str(c.config), env=env)
    signed = _ok("history", "digest", "-c", str(c.config), "--party", "agency", "--pipe",
                 "project", "--sign", env=env).strip()
    plain = _digest(c, "acme", "project", env=env)
    assert signed.startswith(plain + " key=") and " sig=" in signed
    assert private.group(0).split("\n")[1] not in signed  # the key itself stays private
    pub = str(tmp_path / "agency.pub")
    out = _ok("history", "check-digest", "--public-key", pub, signed)
    assert out.startswith("valid signature") and out.strip().endswith(plain)
    forged = signed.replace(" count=7 ", " count=6 ")
    assert "INVALID" in _ok("history", "check-digest", "--public-key", pub, forged, code=1)
    other = tmp_path / "other"
    _ok("keygen", "-o", str(other))
    assert (other.with_suffix(".key").stat().st_mode & 0o777) == 0o600
    out = _ok("history", "check-digest", "--public-key", str(other.with_suffix(".pub")),
              signed, code=1)
    assert "not with this key" in out
    # a party without a key cannot sign; a bad key is a config error that shows no key
    assert run_cli("history", "digest", "-c", str(c.config), "--party", "acme", "--pipe",
                   "project", "--sign", env=env).returncode == 2
    bad = run_cli("check", "-c", str(c.config), env={"AGENCY_SIGNING_KEY": "s3cr3t-not-a-key"})
    assert bad.returncode == 2 and "signing_key" in bad.stderr and "s3cr3t" not in bad.stderr


def test_search_english_and_russian_respects_pipe(conversation: Conversation) -> None:
    c = conversation

    def ids(*args: str) -> list[str]:
        out = _ok("history", "search", "-c", str(c.config), "--party", "agency", *args)
        return re.findall(r"#\S+  (\w+)", out)

    assert ids("contract") == [c.ids["side"], c.ids["reply"]]
    assert ids("contract", "--pipe", "project") == [c.ids["reply"]]
    assert ids("договор") == [c.ids["ru"]]
    assert ids("ДОГОВОР", "--pipe", "side") == []
    assert ids("подрядчика", "--pipe", "side") == [c.ids["side"]]
    assert ids("edited") == [c.ids["edit"]]  # an edit's new text is searchable
    assert ids("contract", "--author", "carol") == [c.ids["reply"]]
    out = _ok("history", "search", "-c", str(c.config), "--party", "acme", "вчера")
    assert "boris (acme/api)  #project" in out and "[вчера]" in out
    empty = run_cli("history", "search", "-c", str(c.config), "--party", "acme", "!!")
    assert empty.returncode == 2 and "no words" in empty.stderr


def test_retention_removes_old_records_and_verify_still_passes(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation.copy_of(tmp_path / "c")
    before = {p: _digest(c, p) for p in ("agency", "acme")}
    write_config(c.config, c.config_dict(acme={"retention_days": 30}))
    # the first four records of acme's store are from last year; the rest are recent
    c.sql("acme", "UPDATE messages SET recorded_at = '2025-01-01 00:00:00.000000' WHERE seq <= 4")

    async def run_once() -> None:
        async with running(c.config, list(c.ports.values())) as daemon:
            await asyncio.sleep(1.0)  # the retention job runs at start
            assert daemon.terminate() == 0

    asyncio.run(run_once())
    assert "retention: party acme, pipe project: removed 3 records" in (
        c.config.with_suffix(".log").read_text())
    out = _ok("history", "verify", "-c", str(c.config), "--party", "acme")
    assert re.search(r"^project: starts from the retention anchor at 3 records", out, re.M), out
    assert "project: intact, 7 records" in out
    assert "side: starts from the retention anchor at 1" in out
    assert _digest(c, "acme") == before["acme"] == before["agency"]
    jsonl = _ok("history", "export", "-c", str(c.config), "--party", "acme")
    assert len(jsonl.splitlines()) == 4  # 8 records, 4 removed
    out = _ok("history", "compare", "-c", str(c.config), "--party", "agency", "--party", "acme")
    assert "project: agree up to 7 messages" in out and "side: agree up to 1 messages" in out
    # as across instances: acme's export (it starts after the cut) against agency's store,
    # and agency's whole export against acme's cut store
    (tmp_path / "acme.jsonl").write_text(jsonl)
    whole = _ok("history", "export", "-c", str(c.config), "--party", "agency")
    (tmp_path / "agency.jsonl").write_text(whole)
    against = _ok("history", "compare", "-c", str(c.config), "--party", "acme",
                  "--against", str(tmp_path / "agency.jsonl"))
    assert against == out, (against, out)
    # (retention cut acme's whole record of side: its export holds project only)
    against = _ok("history", "compare", "-c", str(c.config), "--party", "agency",
                  "--against", str(tmp_path / "acme.jsonl"))
    assert against == out.splitlines(keepends=True)[0], (against, out)
