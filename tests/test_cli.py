"""The ``roomlink`` command line, run as a real process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import roomlink
from rlkit import ROOT, free_port, run_cli, running, write_config


def _config(tmp_path: Path, port: int | None = None, store: str = "sqlite:///a.db") -> Path:
    return write_config(
        tmp_path / "roomlink.yaml",
        {
            "parties": {"agency": {"store": store}, "acme": {"store": "sqlite:///b.db"}},
            "connectors": {
                "agency-api": {
                    "party": "agency",
                    "type": "api",
                    "listen": f"127.0.0.1:{port or free_port()}",
                },
                "acme-api": {"party": "acme", "type": "api", "listen": f"127.0.0.1:{free_port()}"},
            },
            "pipes": {
                "project": {
                    "rooms": [
                        {"connector": "agency-api", "room": "lobby"},
                        {"connector": "acme-api", "room": "lobby"},
                    ]
                }
            },
        },
    )


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"roomlink {roomlink.__version__}"


@pytest.mark.parametrize("command", [
    [], ["run"], ["check"], ["history"], ["history", "export"], ["history", "verify"],
    ["history", "digest"], ["history", "compare"], ["history", "check-digest"],
    ["history", "search"], ["keygen"],
])
def test_help_on_every_command(command: list[str]) -> None:
    done = run_cli(*command, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: roomlink")


def test_check_accepts_the_shipped_configs() -> None:
    for name in ("examples/demo.yaml", "config.example.yaml"):
        done = run_cli("check", "-c", str(ROOT / name))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(")")


def test_check_counts_in_words_of_the_right_number(tmp_path: Path) -> None:
    config = yaml.safe_load(_config(tmp_path).read_text())
    del config["parties"]["acme"], config["connectors"]["acme-api"]
    config["pipes"]["project"]["rooms"][1] = {"connector": "agency-api", "room": "hall"}
    done = run_cli("check", "-c", str(write_config(tmp_path / "one.yaml", config)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok (1 party, 1 connector, 1 pipe)")
    done = run_cli("check", "-c", str(ROOT / "examples/demo.yaml"))
    assert done.stdout.strip().endswith("ok (2 parties, 2 connectors, 1 pipe)")


def test_check_and_run_name_the_line_of_an_error(tmp_path: Path) -> None:
    path = _config(tmp_path)
    text = path.read_text().replace("room: lobby", "rom: lobby", 1)
    path.write_text(text)
    line = text.splitlines().index("    - connector: agency-api") + 1
    for command in ("check", "run"):
        done = run_cli(command, "-c", str(path))
        assert done.returncode == 2
        assert f"{path}:" in done.stderr
        assert re.search(rf"roomlink\.yaml:{line + 1}: .*rom.*did you mean 'room'", done.stderr)


def test_broken_yaml_and_missing_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("parties:\n  agency: {store: [\n")
    done = run_cli("check", "-c", str(bad))
    assert done.returncode == 2 and "bad.yaml:" in done.stderr and "invalid YAML" in done.stderr
    done = run_cli("check", "-c", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "missing.yaml" in done.stderr


def test_export_unknown_party_suggests_a_name(tmp_path: Path) -> None:
    done = run_cli("history", "export", "-c", str(_config(tmp_path)), "--party", "agncy")
    assert done.returncode == 2
    assert "did you mean 'agency'" in done.stderr


def test_unreachable_store_fails_run_without_showing_the_password(tmp_path: Path) -> None:
    path = _config(tmp_path, store="postgresql://bridge:pa55word-xyz@127.0.0.1:1/none")
    done = run_cli("run", "-c", str(path))
    assert done.returncode == 1
    assert "cannot open store" in done.stderr
    assert "pa55word-xyz" not in done.stderr + done.stdout


async def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    path = _config(tmp_path, port)
    async with running(path, [port]) as daemon:
        assert daemon.terminate() == 0
    log = daemon.log()
    assert "running" in log and log.rstrip().endswith("stopped")


def test_outbox_list_says_when_nothing_matched(tmp_path: Path) -> None:
    path = _config(tmp_path)
    done = run_cli("outbox", "list", "-c", str(path), "--party", "agency")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.strip() == ("no failed copies matched in party agency's store; "
                                   "--state all lists every copy")
    done = run_cli("outbox", "list", "-c", str(path), "--party", "acme", "--state", "all",
                   "--room", "acme-api:lobby")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.strip() == "no copies matched in party acme's store for room acme-api:lobby"


def test_digest_defaults_to_the_partys_only_pipe(tmp_path: Path) -> None:
    path = _config(tmp_path)
    done = run_cli("history", "digest", "-c", str(path), "--party", "acme")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("roomlink-digest/1 pipe=project count=0 ")
    config = yaml.safe_load(path.read_text())
    config["pipes"]["side"] = {"rooms": [{"connector": "agency-api", "room": "side"},
                                         {"connector": "acme-api", "room": "side"}]}
    two = write_config(tmp_path / "two.yaml", config)
    done = run_cli("history", "digest", "-c", str(two), "--party", "acme")
    assert done.returncode == 2
    assert done.stderr.strip() == "party acme is in 2 pipes (project, side): name one with --pipe"


def test_an_unknown_pipe_names_the_pipes_there_are(tmp_path: Path) -> None:
    path = _config(tmp_path)
    for command in ("export", "digest", "verify"):
        done = run_cli("history", command, "-c", str(path), "--party", "acme", "--pipe", "nope")
        assert done.returncode == 2
        assert done.stderr.strip() == "unknown pipe 'nope' (pipes: project)"
    done = run_cli("history", "export", "-c", str(path), "--party", "acme", "--pipe", "projct")
    assert "unknown pipe 'projct'; did you mean 'project'?" in done.stderr


def test_signing_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    done = run_cli("history", "digest", "-c", str(_config(tmp_path)), "--party", "acme",
                   "--sign")
    assert done.returncode == 2
    assert "`roomlink keygen -o acme`" in done.stderr
    assert 'signing_key: "${ACME_SIGNING_KEY}"' in done.stderr
