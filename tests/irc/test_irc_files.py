"""Files on a platform without files (IRC), through the real roomlink process and a real
ngIRCd: a file posted in an API room reaches the channel as the fallback line with the
link of the party's ``files_url``, which the admin server answers without its token;
``history verify`` checks the files' bytes."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import yaml
from irckit import BOT, Ngircd, UserFactory, bridge_config

from filekit import SAMPLES, post_files
from rlkit import Room, free_port, run_cli, running

ADMIN_TOKEN = "admin-token-value"
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/files/\S+)")


async def test_a_file_reaches_irc_as_a_line_with_a_working_link(
    tmp_path: Path, ngircd: Ngircd, irc_user: UserFactory
) -> None:
    alice = await irc_user("alice", "#lobby")
    path, port = bridge_config(tmp_path, ngircd, {"main": ["#lobby"]})
    admin_port = free_port()
    config = yaml.safe_load(path.read_text())
    config["admin"] = {"listen": f"127.0.0.1:{admin_port}", "token": ADMIN_TOKEN}
    config["parties"]["agency"]["files_url"] = f"http://127.0.0.1:{admin_port}/files"
    path.write_text(yaml.safe_dump(config))
    png, pdf, hostile = SAMPLES
    async with running(path, [port, admin_port]) as daemon, aiohttp.ClientSession() as http:
        await alice.wait_line(lambda ln: ln.command == "JOIN" and ln.nick == BOT)
        room = Room(http, port, "lobby-main")
        status, answer = await post_files(http, room.base, "the mock-ups", "bob",
                                          [png, pdf, hostile])
        assert status == 202, answer
        texts = await alice.wait_texts("#lobby", 4)
        assert texts[0].endswith("> the mock-ups")
        lines = [text.split("> ", 1)[1] for text in texts[1:4]]  # each line has the nick
        assert lines[0].startswith(f"[file: screenshot.png (image/png, {len(png.data) / 1024:.1f}"
                                   " KiB)] http://")
        assert lines[1].startswith("[file: contract.pdf (application/pdf, 97.8 KiB)] http://")
        name = lines[2].removeprefix("[file: ").split(" (")[0]
        assert "\u202e" not in name and "счёт" in name and "/" not in name
        links = [LINK.search(line) for line in lines]
        assert all(links), lines
        for match, sent in zip(links, (png, pdf, hostile), strict=True):
            assert match is not None
            # no token wanted: the unguessable id is the secret
            async with http.get(match[1]) as resp:
                assert resp.status == 200, match[1]
                assert await resp.read() == sent.data
                assert resp.headers["Content-Disposition"].startswith("attachment;")
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert "sandbox" in resp.headers["Content-Security-Policy"]
        async with http.get(links[0][1].rsplit("/", 2)[0] + "/" + "A" * 32 + "/x.png") as resp:
            assert resp.status == 404
        async with http.get(f"http://127.0.0.1:{admin_port}/api/status") as resp:
            assert resp.status == 401  # everything else still wants the token
        assert daemon.terminate() == 0, daemon.log()

    verified = run_cli("history", "verify", "-c", str(path), "--party", "agency")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "files: 3 of 3 intact" in verified.stdout
    kept = tmp_path / "agency.db.files" / pdf.sha256[:2] / pdf.sha256
    kept.write_bytes(b"not the contract")
    verified = run_cli("history", "verify", "-c", str(path), "--party", "agency")
    assert verified.returncode == 1
    assert re.search(r"message \w+: file 'contract.pdf' does not match its sha256",
                     verified.stdout), verified.stdout
