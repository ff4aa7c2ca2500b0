"""``history compare --against FILE``: a party's store against a jsonl export of another
record, as an operator does it across instances (one side hands the other the file).
The export's lines are edited, removed, cut and damaged by hand, as a file that travelled
could be; the comparison recomputes the chain from their content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from record.conftest import Conversation
from rlkit import run_cli


def _run(c: Conversation, party: str, against: Path, *extra: str,
         code: int = 0) -> tuple[str, str]:
    done = run_cli("history", "compare", "-c", str(c.config), "--party", party,
                   "--against", str(against), *extra)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done.stdout, done.stderr


def _export(c: Conversation, party: str, dest: Path, *extra: str) -> list[dict[str, Any]]:
    done = run_cli("history", "export", "-c", str(c.config), "--party", party,
                   "--format", "jsonl", *extra)
    assert done.returncode == 0, done.stderr
    dest.write_text(done.stdout, encoding="utf-8")
    return [json.loads(line) for line in done.stdout.splitlines()]


def _write(dest: Path, records: list[dict[str, Any]]) -> Path:
    dest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return dest


def test_an_export_of_an_equal_record_agrees_like_the_in_config_compare(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation
    acme = tmp_path / "acme.jsonl"
    records = _export(c, "acme", acme)
    both = run_cli("history", "compare", "-c", str(c.config), "--party", "agency",
                   "--party", "acme")
    assert both.returncode == 0, both.stderr
    out, _ = _run(c, "agency", acme)
    assert out == both.stdout  # every pipe both are in: project and side, the same lines
    assert out.splitlines()[0].startswith(f"project: agree up to 7 messages (last "
                                          f"{c.ids['last']}, head ")
    # contractor is in project only: only project is compared
    out, _ = _run(c, "contractor", acme)
    assert out == both.stdout.splitlines(keepends=True)[0]
    out, _ = _run(c, "agency", acme, "--pipe", "side")
    assert out.startswith("side: agree up to 1 messages")
    # an export written before position and previous existed: from position 1
    old = [{k: v for k, v in r.items() if k not in ("position", "previous")} for r in records]
    out, _ = _run(c, "agency", _write(tmp_path / "old.jsonl", old), "--pipe", "project")
    assert out.startswith("project: agree up to 7 messages")
    # an export of the newer part only (the first two records cut away): it agrees from
    # where it starts, and an edited start does not
    project = [r for r in records if r["pipe"] == "project"]
    out, _ = _run(c, "agency", _write(tmp_path / "newer.jsonl", project[2:]))
    assert out.startswith("project: agree up to 7 messages")
    moved = [{**project[2], "previous": "ab" * 32}, *project[3:]]
    out, _ = _run(c, "agency", _write(tmp_path / "moved.jsonl", moved), code=1)
    assert out.strip() == ("project: differ before position 3: the chains disagree where "
                           "moved.jsonl starts")


def test_an_edited_or_shortened_export_names_the_first_difference(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation
    records = _export(c, "acme", tmp_path / "acme.jsonl", "--pipe", "project")
    # the text of one line edited; its chain value left as it was (it is not trusted)
    edited = [dict(r) for r in records]
    edited[1]["text"] = "Договор не подписан"
    out, _ = _run(c, "agency", _write(tmp_path / "edited.jsonl", edited), code=1)
    assert out.strip() == (f"project: differ at position 2: different content of message "
                           f"{c.ids['ru']} (text differs)")
    # the author and the time edited too: both named
    edited[1] = {**records[1], "author": {**records[1]["author"], "name": "mallory"},
                 "ts": "2020-01-01T00:00:00Z"}
    out, _ = _run(c, "agency", _write(tmp_path / "edited.jsonl", edited), code=1)
    assert out.strip().endswith(f"message {c.ids['ru']} (author, ts differ)")
    # a line removed: the export misses that message
    removed = records[:2] + records[3:]
    out, _ = _run(c, "agency", _write(tmp_path / "removed.jsonl", removed), code=1)
    assert out.strip() == (f"project: differ at position 3: missing message: removed.jsonl "
                           f"has no message {c.ids['reply']}, which agency holds")
    # two lines swapped
    swapped = [records[0], records[2], records[1], *records[3:]]
    out, _ = _run(c, "agency", _write(tmp_path / "swapped.jsonl", swapped), code=1)
    assert out.strip() == (f"project: differ at position 2: different order: agency has "
                           f"{c.ids['ru']} there, swapped.jsonl has {c.ids['reply']}")
    # the export is shorter (made before the last message): the local record holds more
    out, _ = _run(c, "agency", _write(tmp_path / "early.jsonl", records[:-1]), code=1)
    assert out.strip() == (f"project: differ at position 7: missing message: early.jsonl "
                           f"has no message {c.ids['last']}, which agency holds (and every "
                           "later one)")


def test_a_local_record_that_differs_from_the_export(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation.copy_of(tmp_path / "c")
    acme = tmp_path / "acme.jsonl"
    _export(c, "acme", acme)
    c.sql("contractor", f"DELETE FROM messages WHERE id = '{c.ids['reply']}'")
    out, _ = _run(c, "contractor", acme, code=1)
    assert out.strip() == (f"project: differ at position 3: missing message: contractor has "
                           f"no message {c.ids['reply']}, which acme.jsonl holds")


def test_usage_errors_are_clear(conversation: Conversation, tmp_path: Path) -> None:
    c = conversation
    acme = tmp_path / "acme.jsonl"
    _export(c, "acme", acme, "--pipe", "side")
    _, err = _run(c, "agency", tmp_path / "nothing.jsonl", code=2)
    assert "nothing.jsonl: cannot read: No such file or directory" in err
    _, err = _run(c, "agency", tmp_path, code=2)
    assert "cannot read" in err
    text = tmp_path / "acme.txt"
    text.write_text(run_cli("history", "export", "-c", str(c.config), "--party", "acme",
                            "--format", "text").stdout)
    _, err = _run(c, "agency", text, code=2)
    assert "acme.txt line 1: not JSON: not a jsonl export of a record" in err
    (tmp_path / "empty.jsonl").write_text("")
    _, err = _run(c, "agency", tmp_path / "empty.jsonl", code=2)
    assert "empty.jsonl holds no records" in err
    (tmp_path / "other.jsonl").write_text('{"hello": "world"}\n')
    _, err = _run(c, "agency", tmp_path / "other.jsonl", code=2)
    assert "other.jsonl line 1: 'author' is not an object" in err
    _, err = _run(c, "agency", acme, "--pipe", "project", code=2)
    assert "pipe project is not in acme.jsonl (it holds: side)" in err
    _, err = _run(c, "contractor", acme, code=2)
    assert "acme.jsonl holds no pipe that party contractor is in" in err
    _, err = _run(c, "agency", acme, "--party", "acme", code=2)
    assert "compare --against FILE compares one party's record with the export" in err
    done = run_cli("history", "compare", "-c", str(c.config), "--party", "agency")
    assert done.returncode == 2 and "--against FILE" in done.stderr
