"""`roomlink check` on Matrix connector configs: what an admin gets wrong is named, and no
secret is ever printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlkit import run_cli, write_config


def _check(tmp_path: Path, change: dict[str, Any], room: str = "#project:example.org"
           ) -> tuple[int, str]:
    options: dict[str, Any] = {"homeserver": "https://matrix.example.org",
                               "user_id": "@roomlink:example.org",
                               "access_token": "syt_very_secret_token"}
    options.update(change)
    options = {k: v for k, v in options.items() if v is not None}
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": f"sqlite:///{tmp_path}/agency.db"}},
        "connectors": {"mx": {"party": "agency", "type": "matrix", **options},
                       "web": {"party": "agency", "type": "api", "listen": "127.0.0.1:18099"}},
        "pipes": {"p": {"rooms": [{"connector": "mx", "room": room},
                                  {"connector": "web", "room": "lobby"}]}},
    })
    done = run_cli("check", "-c", str(path))
    return done.returncode, done.stdout + done.stderr


def test_check_names_matrix_config_mistakes(tmp_path: Path) -> None:
    assert _check(tmp_path, {})[0] == 0
    assert _check(tmp_path, {}, room="!abcdefABCDEF0123456789")[0] == 0  # room version 12
    assert _check(tmp_path, {"access_token": None, "password": "pw"})[0] == 0
    code, out = _check(tmp_path, {"access_token": None})
    assert code == 2 and "access_token or password" in out
    code, out = _check(tmp_path, {"homeserver": "matrix.example.org"})
    assert code == 2 and "homeserver" in out
    code, out = _check(tmp_path, {"user_id": "roomlink"})
    assert code == 2 and "user_id" in out
    code, out = _check(tmp_path, {"acess_token": "x"})
    assert code == 2 and "acess_token" in out
    code, out = _check(tmp_path, {}, room="general")
    assert code == 2 and "is not a Matrix room" in out
    assert "syt_very_secret_token" not in out
