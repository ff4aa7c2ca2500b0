"""The status page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

A real IRC server refuses the bridge in a moderated channel (a failed delivery), then
dies and comes back (the connector goes down and up again); the page shows each, by
itself, and its retry button delivers the failed copy once the cause is gone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from irckit import BOT, IrcUser, Ngircd, UserFactory, bridge_config
from playwright.async_api import Browser, Page, async_playwright, expect

from rlkit import Room, free_port, running, write_config

TOKEN = "status-page-token-1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
ZWJ = "\u200d"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def joined(nick: str, channel: str):  # type: ignore[no-untyped-def]
    return lambda ln: ln.command == "JOIN" and ln.nick == nick and ln.params[0] == channel


def cell(page: Page, row: str, column: int):  # type: ignore[no-untyped-def]
    return page.locator(f"{row} td").nth(column)


async def screenshot(page: Page, tmp_path: Path) -> Path:
    shot = tmp_path / "status-page.png"
    await page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ROOMLINK_SCREENSHOT"):  # how docs/status-page.png is made
        shutil.copy(shot, os.environ["ROOMLINK_SCREENSHOT"])
    return shot


async def test_status_page_shows_failures_and_a_connector_going_down_and_up(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory, browser: Browser
) -> None:
    op: IrcUser = await irc_user("oper", "#ops")
    op.send("MODE #ops +m")  # the server will refuse the bridge's lines
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#ops"]}, ping_interval=2,
                               ping_timeout=2)
    admin = free_port()
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    cfg["delivery"] = {"max_attempts": 2, "backoff_initial": 0.05, "backoff_max": 0.1}
    cfg["admin"] = {"listen": f"127.0.0.1:{admin}", "token": TOKEN}
    write_config(path, cfg)
    base = f"http://127.0.0.1:{admin}"
    async with running(path, [port, admin]) as daemon, aiohttp.ClientSession() as http:
        await op.wait_line(joined(BOT, "#ops"))

        # the token guards everything but /healthz, as a header or in the address
        for url in ("/", "/api/status", "/metrics"):
            async with http.get(base + url) as resp:
                assert resp.status == 401, url
        async with http.get(base + "/api/status?token=wrong") as resp:
            assert resp.status == 401
        async with http.post(base + "/api/outbox/retry", json={}) as resp:
            assert resp.status == 401
        async with http.get(base + "/healthz") as resp:
            health = await resp.json()
            assert resp.status == 200 and set(health) == {"status", "rooms", "stores"}
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(base + "/metrics", headers=bearer) as resp:
            assert resp.status == 200

        # the connectors and pipes are in the served HTML itself, not only after a script
        async with http.get(f"{base}/?token={TOKEN}") as resp:
            html = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
        for piece in ('data-connector="api"', 'data-connector="irc"', "<td>main</td>",
                      'data-room="irc:#ops"', '<td class="idle">no client</td>'):
            assert piece in html
        assert "http://" not in html.replace(base, "") and "https://" not in html

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(f"{base}/?token={TOKEN}")
        irc_state = cell(page, 'tr[data-connector="irc"]', 3)
        await expect(irc_state).to_have_text("connected", timeout=15_000)

        # an API room nobody watches is normal, not an error: grey "no client", its copies
        # counted as pending; with a watcher it is ready and the copy is delivered
        api_room = 'tr[data-room="api:lobby-main"]'
        api_state = cell(page, api_room, 4)
        await expect(api_state).to_have_text("no client")
        assert await api_state.evaluate("e => getComputedStyle(e).color") == "rgb(101, 109, 118)"
        op.say("#ops", "for nobody yet")
        await expect(cell(page, api_room, 5)).to_have_text("1", timeout=15_000)
        await expect(api_state).to_have_text("no client")
        async with http.get(base + "/api/status", headers=bearer) as resp:
            api_status = next(r for r in (await resp.json())["rooms"] if r["connector"] == "api")
        assert (api_status["ready"], api_status["idle"], api_status["pending"]) == (
            False, "no client", 1)
        async with Room(http, port, "lobby-main").stream() as api_watcher:
            await api_watcher.wait_for(1, timeout=15)
            await expect(api_state).to_have_text("ready", timeout=10_000)
            await expect(cell(page, api_room, 5)).to_have_text("0", timeout=10_000)
        await expect(api_state).to_have_text("no client", timeout=10_000)

        # a delivery that fails for good shows up by itself, with the server's error
        said = await Room(http, port, "lobby-main").post("refused at first", "bob")
        failed_cell = cell(page, 'tr[data-room="irc:#ops"]', 6)
        await expect(failed_cell).to_have_text("1", timeout=20_000)
        failure = page.locator("#failures tr").first
        await expect(failure).to_contain_text(said["id"])
        await expect(failure).to_contain_text("refused")
        async with http.get(base + "/api/status", headers=bearer) as resp:
            status = await resp.json()
        rooms = {(r["connector"], r["room"]): r for r in status["rooms"]}
        assert set(rooms) == {("api", "lobby-main"), ("irc", "#ops")}  # one per room
        assert rooms["irc", "#ops"]["failed"] == 1 and rooms["irc", "#ops"]["pending"] == 0
        assert all(isinstance(r["pending"], int) and isinstance(r["failed"], int)
                   for r in status["rooms"])

        # the IRC server dies: the connector is down, and says why
        await op.close()
        ngircd.kill()
        await expect(irc_state).to_have_text("down", timeout=20_000)
        await expect(cell(page, 'tr[data-connector="irc"]', 5)).not_to_be_empty()
        # ... and comes back
        await ngircd.start()
        await expect(irc_state).to_have_text("connected", timeout=30_000)
        shot = await screenshot(page, tmp_path)
        assert shot.stat().st_size > 10_000

        # the channel came back without +m: the retry button delivers the copy, once
        watcher = IrcUser(ngircd.port, "watcher")
        await watcher.connect()
        await watcher.join("#ops")
        try:
            await page.locator('tr[data-room="irc:#ops"] button').click()
            texts = await watcher.wait_texts("#ops", 1, timeout=15)
            assert texts == [f"<b{ZWJ}ob> refused at first"]
            await expect(failed_cell).to_have_text("0", timeout=10_000)
            await expect(page.locator("#failures tr")).to_have_count(0)
            assert watcher.texts("#ops") == texts
        finally:
            await watcher.close()
        assert daemon.terminate() == 0, daemon.log()
