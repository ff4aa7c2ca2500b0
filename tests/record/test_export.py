"""Every export format of a real conversation's record, read back by a standard tool;
the HTML transcript opened in headless Chromium (Debian's chromium, through Playwright)."""

from __future__ import annotations

import contextlib
import json
import mailbox
import os
import re
from collections.abc import Iterator
from email.header import decode_header, make_header
from html.parser import HTMLParser
from pathlib import Path

import pytest

from record.conftest import Conversation
from rlkit import run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"]  # fmt: skip


def _export(c: Conversation, party: str, fmt: str, *extra: str) -> str:
    done = run_cli("history", "export", "-c", str(c.config), "--party", party,
                   "--format", fmt, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _jsonl(c: Conversation, party: str, *extra: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in _export(c, party, "jsonl", *extra).splitlines()]


def test_jsonl_keeps_its_fields_and_adds_the_chain(conversation: Conversation) -> None:
    records = _jsonl(conversation, "agency")
    assert len(records) == 8  # project 7 + side 1
    assert set(records[0]) == {
        "seq", "id", "pipe", "kind", "origin_connector", "origin_room", "origin_native_id",
        "author", "text", "attachments", "reply_to", "target", "ts", "chain",
        "position", "previous"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", str(r["chain"])) for r in records)
    # each record's place in its pipe's chain: the position and the chain value before it
    project = [r for r in records if r["pipe"] == "project"]
    assert [r["position"] for r in project] == list(range(1, 8))
    assert project[0]["previous"] == "0" * 64
    assert [r["previous"] for r in project[1:]] == [r["chain"] for r in project[:-1]]
    only = _jsonl(conversation, "agency", "--pipe", "side")
    assert [r["id"] for r in only] == [conversation.ids["side"]]
    today = str(records[0]["ts"])[:10]
    assert len(_jsonl(conversation, "agency", "--since", today, "--until", today)) == 8
    assert _jsonl(conversation, "agency", "--until", "2000-01-01") == []


def test_text_is_a_plain_log(conversation: Conversation) -> None:
    c = conversation
    lines = _export(c, "acme", "text", "--pipe", "project").splitlines()
    body = [x for x in lines if not x.startswith("-- ")]
    assert len(body) == 7
    assert all(re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d\] ", x) for x in body)
    assert re.match(r"\[.{16}\] boris \(acme/api\): Договор ПОДПИСАН вчера вечером$", body[1])
    assert body[2].endswith("carol (contractor/api) (in reply to boris): Great, the contract "
                            "is signed")
    assert f"alice (agency/api) edited {c.ids['hello']}: Hello from the agency (edited)" in body[3]
    assert body[5].endswith(f"boris (acme/api) deleted {c.ids['ru']}")
    assert lines[-1].startswith("-- roomlink-digest/1 pipe=project count=7 ")


def test_mbox_opens_with_pythons_mailbox_threaded_by_pipe_and_reply(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation
    path = tmp_path / "agency.mbox"
    done = run_cli("history", "export", "-c", str(c.config), "--party", "agency",
                   "--format", "mbox", "-o", str(path))
    assert done.returncode == 0, done.stderr
    assert "%|" not in done.stderr  # no progress bar when not on a terminal
    mails = list(mailbox.mbox(str(path)))
    assert len(mails) == 8
    by_id = {m["Message-ID"]: m for m in mails}
    assert set(by_id) == {f"<{i}@roomlink.invalid>" for i in c.ids.values()}
    reply = by_id[f"<{c.ids['reply']}@roomlink.invalid>"]
    assert reply["In-Reply-To"] == f"<{c.ids['ru']}@roomlink.invalid>"
    assert reply["References"].startswith("<pipe.project@roomlink.invalid>")
    assert "carol (contractor/api)" in str(reply["From"])
    ru = by_id[f"<{c.ids['ru']}@roomlink.invalid>"]
    assert ru.get_payload(decode=True).decode().strip() == "Договор ПОДПИСАН вчера вечером"
    deleted = by_id[f"<{c.ids['delete']}@roomlink.invalid>"]
    subject = str(make_header(decode_header(deleted["Subject"])))
    assert subject == "[project] Deleted: Договор ПОДПИСАН вчера вечером"
    assert "Договор ПОДПИСАН" in deleted.get_payload(decode=True).decode()
    assert all(m["Date"] and m["X-Roomlink-Chain"] for m in mails)


class _Transcript(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.articles: list[dict[str, str | None]] = []
        self.days = 0
        self.tags: set[str] = set()
        self.digests: list[str] = []
        self._in_digest = False
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "article":
            self.articles.append(a)
        if tag == "h2" and a.get("class") == "day":
            self.days += 1
        if tag == "pre" and a.get("class") == "digest":
            self._in_digest = True
        if tag in ("link", "img", "script") and (a.get("src") or a.get("href")):
            self.external.append(str(a.get("src") or a.get("href")))

    def handle_data(self, data: str) -> None:
        if self._in_digest:
            self.digests.append(data)
            self._in_digest = False


def test_html_transcript_parses_and_renders_in_chromium(
    conversation: Conversation, tmp_path: Path
) -> None:
    c = conversation
    path = tmp_path / "transcript.html"
    done = run_cli("history", "export", "-c", str(c.config), "--party", "acme",
                   "--format", "html", "-o", str(path))
    assert done.returncode == 0, done.stderr
    page = path.read_text()
    parsed = _Transcript()
    parsed.feed(page)
    assert [a["data-id"] for a in parsed.articles] == [
        c.ids[k] for k in ("hello", "ru", "reply", "side", "edit", "after", "delete", "last")]
    assert parsed.days == 1 and parsed.external == []  # self-contained
    assert "<script>alert(1)</script>" not in page  # said text is shown, never run
    digests = _export(c, "acme", "text").splitlines()[-2:]
    assert parsed.digests == [d.removeprefix("-- ") for d in digests]

    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: scripts/test installs it (apt chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            # as printed or mailed: no script runs, and none is needed
            tab = browser.new_page(viewport={"width": 900, "height": 1000},
                                   java_script_enabled=False)
            tab.goto(path.as_uri())
            shown = tab.locator("article.msg")
            assert shown.count() == 8
            for i in range(8):
                assert shown.nth(i).is_visible()
            hello = tab.locator(f"#m-{c.ids['hello']}")
            assert "Hello from the agency <script>alert(1)</script> & co" in hello.inner_text()
            # the original is marked where it stands, and links to the change
            assert "(edited)" in hello.inner_text()
            hello.locator("a.flag").click()
            assert tab.url.endswith(f"#m-{c.ids['edit']}")
            ru = tab.locator(f"#m-{c.ids['ru']}")
            assert "(deleted)" in ru.inner_text() and "deleted" in ru.get_attribute("class")
            struck = ru.locator(".text").evaluate("e => getComputedStyle(e).textDecorationLine")
            assert struck == "line-through"
            # the canonical markup is rendered, not shown as asterisks and backticks
            after = tab.locator(f"#m-{c.ids['after']} .text")
            assert after.inner_text().strip() == "After the restart: the invoice is attached"
            assert after.locator("strong").inner_text() == "invoice"
            assert after.locator("code").inner_text() == "attached"
            assert "(edited)" not in after.inner_text()
            # the record keeps what a deleted message said, and an edit's earlier text
            assert "Договор ПОДПИСАН" in tab.locator(f"#m-{c.ids['delete']}").inner_text()
            edit = tab.locator(f"#m-{c.ids['edit']}")
            edit.locator("summary").click()
            assert "<script>alert(1)</script>" in edit.locator("details").inner_text()
            tab.locator(f"#m-{c.ids['reply']} a.reply").click()
            assert tab.url.endswith(f"#m-{c.ids['ru']}")
            assert "roomlink-digest/1 pipe=project count=7" in tab.locator("footer").inner_text()
            shot = tmp_path / "transcript.png"
            tab.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


def test_progress_bar_on_a_terminal_only(conversation: Conversation, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    from rlkit import roomlink_cmd

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    out = tmp_path / "t.txt"
    try:
        done = subprocess.run(
            roomlink_cmd("history", "export", "-c", str(conversation.config), "--party",
                         "acme", "--format", "text", "-o", str(out)),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary, timeout=120,
        )
        os.close(secondary)
        shown = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(primary, 4096):
                shown += chunk
    finally:
        os.close(primary)
    assert done.returncode == 0
    assert re.search(rb"export text: 100%\|.*\| 8(\.00)?/8(\.00)? ", shown), shown
    assert out.read_text().count("\n") == 10  # 8 records and 2 digest lines


# -- files beside the export (`--files DIR`) ----------------------------------------------

@pytest.fixture(scope="module")
def with_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """agency's store on PostgreSQL (its files in the database), acme's on SQLite (in a
    folder); acme posts a message with an image, a PDF and a file with a hostile name,
    then a plain one. Yields the config."""
    import asyncio

    import aiohttp

    from filekit import SAMPLES, post_files
    from record.conftest import PG, _pg, new_pg_database
    from rlkit import Room, free_port, running, write_config

    folder = tmp_path_factory.mktemp("files")
    database = new_pg_database()
    ports = {p: free_port() for p in ("agency", "acme")}
    config = write_config(folder / "roomlink.yaml", {
        "parties": {"agency": {"store": f"{PG}/{database}"},
                    "acme": {"store": "sqlite:///acme.db"}},
        "connectors": {f"{p}-api": {"party": p, "type": "api",
                                    "listen": f"127.0.0.1:{port}"} for p, port in ports.items()},
        "pipes": {"project": {"rooms": [{"connector": f"{p}-api", "room": "lobby"}
                                        for p in ports]}},
    })

    async def converse() -> None:
        async with running(config, list(ports.values())) as daemon, \
                aiohttp.ClientSession() as http:
            acme = Room(http, ports["acme"], "lobby")
            status, answer = await post_files(http, acme.base, "the mock-ups, the contract",
                                              "boris", SAMPLES)
            assert status == 202, answer
            await acme.post("no file here", "boris")
            assert daemon.terminate() == 0

    asyncio.run(converse())
    try:
        yield config
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_files_are_copied_beside_every_export_and_linked(with_files: Path,
                                                         tmp_path: Path) -> None:
    from email.utils import collapse_rfc2231_value

    from filekit import SAMPLES, clean_name_ok

    out, files = tmp_path / "out", tmp_path / "out" / "files"
    out.mkdir()
    for fmt in ("jsonl", "html", "mbox", "text"):
        done = run_cli("history", "export", "-c", str(with_files), "--party", "agency",
                       "--format", fmt, "-o", str(out / f"record.{fmt}"), "--files", str(files))
        assert done.returncode == 0, done.stderr
        assert "copied 3 files" in done.stderr
    # DIR/<sha256 prefix>/<cleaned name>, equal bytes, nothing else and nothing outside
    copies = sorted(p for p in files.rglob("*") if p.is_file())
    assert len(copies) == 3 and all(p.parent.parent == files for p in copies)
    by_data = {p.read_bytes(): p for p in copies}
    for f in SAMPLES:
        copy = by_data[f.data]
        assert copy.parent.name == f.sha256[:16] and clean_name_ok(copy.name, f.name)
    # jsonl: every attachment field, and the copy's path relative to the export
    first, second = [json.loads(x) for x in (out / "record.jsonl").read_text().splitlines()]
    assert [(a["name"], a["mime"], a["size"], a["sha256"]) for a in first["attachments"]] == [
        (by_data[f.data].name, f.type, len(f.data), f.sha256) for f in SAMPLES]
    assert [(out / a["path"]).read_bytes() for a in first["attachments"]] == [
        f.data for f in SAMPLES]
    assert second["attachments"] == []
    # mbox: the files as MIME attachments, decoded equal
    mails = list(mailbox.mbox(str(out / "record.mbox")))
    assert len(mails) == 2 and not mails[1].is_multipart()
    parts = [p for p in mails[0].walk() if p.get_content_disposition() == "attachment"]
    assert [p.get_payload(decode=True) for p in parts] == [f.data for f in SAMPLES]
    assert [p.get_content_type() for p in parts] == [f.type for f in SAMPLES]
    names = [collapse_rfc2231_value(p.get_param("filename", header="content-disposition"))
             for p in parts]
    assert names == [by_data[f.data].name for f in SAMPLES]
    body = next(p for p in mails[0].walk() if p.get_content_type() == "text/plain")
    assert "the mock-ups, the contract" in body.get_payload(decode=True).decode()
    # text: a line per file with its type, size and digest
    text = (out / "record.text").read_text()
    assert all(f"sha256:{f.sha256}" in text for f in SAMPLES)
    # html: the image inline, the others linked, all relative to the transcript
    page = (out / "record.html").read_text()
    parsed = _Transcript()
    parsed.feed(page)
    png = by_data[SAMPLES[0].data].relative_to(out).as_posix()
    assert parsed.external == [png]  # the image, from the files folder beside it
    assert f'href="{png}"' in page
    from urllib.parse import quote
    for f in SAMPLES[1:]:
        assert f'href="{quote(by_data[f.data].relative_to(out).as_posix())}"' in page

    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: scripts/test installs it (apt chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page()
            tab.goto((out / "record.html").as_uri())
            image = tab.locator("figure.att img")
            assert image.count() == 1
            image.scroll_into_view_if_needed()
            tab.wait_for_function("document.querySelector('figure.att img').complete")
            assert tab.evaluate("document.querySelector('figure.att img').naturalWidth") == 160
        finally:
            browser.close()


def test_without_files_the_export_names_them(with_files: Path) -> None:
    from filekit import SAMPLES

    page = _export_config(with_files, "html")
    assert "<img" not in page and "screenshot.png" in page and "image/png" in page
    mbox = _export_config(with_files, "mbox")
    assert "multipart" not in mbox and f"sha256:{SAMPLES[1].sha256}" in mbox


def _export_config(config: Path, fmt: str) -> str:
    done = run_cli("history", "export", "-c", str(config), "--party", "acme", "--format", fmt)
    assert done.returncode == 0, done.stderr
    return done.stdout
