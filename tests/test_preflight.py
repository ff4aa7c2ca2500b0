"""What `check` and `run` say about a config before anything runs: clashing listen
addresses, store files that do not exist yet, store passwords a URL cannot hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit import free_port, run_cli, running, write_config
from roomlink.store.urls import redact, unencoded_password


def _config(tmp_path: Path, *, agency_store: str = "sqlite:///a.db",
            acme_listen: str | None = None) -> Path:
    agency = f"127.0.0.1:{free_port()}"
    return write_config(
        tmp_path / "roomlink.yaml",
        {
            "parties": {"agency": {"store": agency_store}, "acme": {"store": "sqlite:///b.db"}},
            "connectors": {
                "agency-api": {"party": "agency", "type": "api", "listen": agency},
                "acme-api": {"party": "acme", "type": "api",
                             "listen": acme_listen or f"127.0.0.1:{free_port()}"},
            },
            "pipes": {"project": {"rooms": [
                {"connector": "agency-api", "room": "lobby"},
                {"connector": "acme-api", "room": "lobby"},
            ]}},
        },
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pa@ss/w?rd#x@db.internal:5432/acme",
         "postgresql://app:***@db.internal:5432/acme"),
        ("postgresql://app:plain@db/acme", "postgresql://app:***@db/acme"),
        ("postgresql://app:p%40ss@db/acme", "postgresql://app:***@db/acme"),
        ("postgresql://db/acme", "postgresql://db/acme"),
        ("sqlite:////data/a@b.db", "sqlite:////data/a@b.db"),
    ],
)
def test_redact_hides_the_whole_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_unencoded_password_is_noticed() -> None:
    assert unencoded_password("postgresql://app:pa@ss@db/acme")
    assert not unencoded_password("postgresql://app:p%40ss@db/acme")
    assert not unencoded_password("postgresql://app:plain@db/acme")


def test_a_password_with_at_is_warned_about_and_never_logged(tmp_path: Path) -> None:
    path = _config(tmp_path, agency_store="postgresql://bridge:${PW}@127.0.0.1:1/none")
    env = {"PW": "s3cr@t/x?y-tail"}
    done = run_cli("check", "-c", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "percent-encode" in done.stderr and "party agency" in done.stderr
    done = run_cli("run", "-c", str(path), env=env)
    assert done.returncode == 1
    out = done.stderr + done.stdout
    assert "cannot open store postgresql://bridge:***@127.0.0.1:1/none" in out
    for piece in ("s3cr", "t/x", "x?y", "y-tail"):
        assert piece not in out, out


def test_two_connectors_on_one_address_is_a_config_error(tmp_path: Path) -> None:
    port = free_port()
    path = _config(tmp_path, acme_listen=f"0.0.0.0:{port}")
    text = path.read_text()
    path.write_text(text.replace(text.split("listen: ")[1].split("\n")[0],
                                 f"127.0.0.1:{port}", 1))
    done = run_cli("check", "-c", str(path))
    assert done.returncode == 2
    assert "connectors.acme-api.listen" in done.stderr
    assert "already used by connectors.agency-api" in done.stderr


def test_missing_store_files_are_named_by_check_and_run(tmp_path: Path) -> None:
    path = _config(tmp_path, agency_store="sqlite:///typo-folder/a.db")
    done = run_cli("check", "-c", str(path))
    assert done.returncode == 0
    for name in ("typo-folder/a.db", "b.db"):
        assert f"{tmp_path / name} does not exist yet" in done.stderr
    assert "its folder" in done.stderr
    (tmp_path / "b.db").touch()
    done = run_cli("check", "-c", str(path))
    assert str(tmp_path / "b.db") not in done.stderr


async def test_run_logs_each_store_and_warns_when_it_creates_one(tmp_path: Path) -> None:
    path = _config(tmp_path)
    port = int(path.read_text().split("listen: 127.0.0.1:")[1].split("\n")[0])
    for _ in range(2):
        async with running(path, [port]) as daemon:
            assert daemon.terminate() == 0
    first, second = daemon.log().split(" stopped\n")[:2]
    assert f"WARNING roomlink: party agency: store {tmp_path / 'a.db'} does not exist" in first
    assert f"INFO roomlink: party agency: store {tmp_path / 'a.db'}\n" in second
