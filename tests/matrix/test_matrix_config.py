"""`roomlink check` on Matrix connector configs: what an admin gets wrong is named, and no
secret is ever printed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from connectors.matrix.options import MatrixOptions
from connectors.matrix.session import key_folder

from rlkit import run_cli, write_config
from roomlink.connector import ConnectorContext


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


def test_an_earlier_versions_key_folder_stays_in_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Upgrading loses no encryption keys: ./matrix-keys/<connector>, where they used to
    be, is kept in use (said once in the log); a new connector's go beside the store."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "matrix-keys" / "mx").mkdir(parents=True)
    (tmp_path / "matrix-keys" / "mx" / "roomlink_DEVICE.db").write_bytes(b"keys")
    opts = MatrixOptions(homeserver="https://matrix.example.org",
                         user_id="@roomlink:example.org", access_token="token")

    def ctx(name: str) -> ConnectorContext:
        async def nothing(*_: Any) -> Any:
            return None

        return ConnectorContext(name=name, party="agency", rooms=[], accept=nothing,
                                get_cursor=nothing, set_cursor=nothing,
                                state_dir=tmp_path / "agency.db.state" / name)

    with caplog.at_level(logging.INFO, logger="roomlink.connector"):
        assert key_folder(opts, ctx("mx")).resolve() == tmp_path / "matrix-keys" / "mx"
    assert "from an earlier version" in caplog.text
    assert key_folder(opts, ctx("new")) == tmp_path / "agency.db.state" / "new" / "keys"
    assert (tmp_path / "agency.db.state" / "new" / "keys").is_dir()
