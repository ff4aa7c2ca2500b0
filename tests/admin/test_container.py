"""The container's health check and its own config, run as they run in the image."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from rlkit import ROOT, free_port, roomlink_cmd, run_cli, running, write_config


def healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roomlink.admin.healthcheck"], capture_output=True,
                          text=True, timeout=30, env={"ROOMLINK_HEALTH_URL": url})


def test_the_dockerfile_checks_health_soon_and_labels_the_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim" in dockerfile  # Docker Hub or a local stand-in
    # every 3 s: healthy a few seconds after the start (podman keeps it with --format docker)
    assert re.search(r'^HEALTHCHECK --interval=3s .*\\\n\s+CMD \["python", "-m", '
                     r'"roomlink.admin.healthcheck"\]', dockerfile, re.M)
    assert 'LABEL org.opencontainers.image.title="roomlink"' in dockerfile
    assert "COPY docker/roomlink.yaml /config/roomlink.yaml" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert 'VOLUME ["/data"]' in dockerfile  # no anonymous volume for /config
    # the dependencies are installed before the code is copied in
    assert dockerfile.index("COPY pyproject.toml") < dockerfile.index("COPY src")


def test_every_package_folder_is_installed_by_pip_install_dot() -> None:
    """The image (and the quick start) install with ``pip install .``, which takes only the
    packages pyproject.toml lists: a new subpackage missing there breaks them, not the
    editable install the other tests use."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join((top, *init.parent.relative_to(folder).parts))
             for top, folder in (("roomlink", ROOT / "src/roomlink"),
                                 ("roomlink_connectors", ROOT / "connectors"))
             for init in folder.rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"


def check_image_config(**env: str) -> subprocess.CompletedProcess[str]:
    """``roomlink check`` of the image's own config with only these token variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_TOKEN")}
    return subprocess.run(roomlink_cmd("check", "-c", str(ROOT / "docker/roomlink.yaml")),
                          capture_output=True, text=True, timeout=60, env={**clean, **env})


def test_the_image_config_wants_its_tokens_and_serves_the_health_check() -> None:
    from roomlink.admin.healthcheck import DEFAULT_URL

    done = check_image_config()
    assert done.returncode == 2 and "AGENCY_API_TOKEN is not set" in done.stderr
    done = check_image_config(AGENCY_API_TOKEN="a", ACME_API_TOKEN="b")
    assert done.returncode == 0 and "OPEN API" not in done.stderr, done.stderr
    done = check_image_config(AGENCY_API_TOKEN="", ACME_API_TOKEN="")  # empty: no auth
    assert done.returncode == 0
    assert "OPEN API: connector agency-api listens on 0.0.0.0:8081 without a token" in done.stderr
    assert "OPEN API: connector acme-api listens on 0.0.0.0:8082 without a token" in done.stderr
    config = yaml.safe_load((ROOT / "docker/roomlink.yaml").read_text())
    assert DEFAULT_URL == f"http://{config['admin']['listen']}/healthz"
    assert config["admin"]["listen"].startswith("127.0.0.1:")  # private: inside only


def test_the_readme_shows_the_compose_file_as_shipped() -> None:
    compose = (ROOT / "docker/compose.yaml").read_text()
    assert f"```yaml\n{compose}```" in (ROOT / "README.md").read_text()


def test_check_warns_about_listeners_others_reach_without_a_token(tmp_path: Path) -> None:
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"}},
        "connectors": {
            "open": {"party": "agency", "type": "api", "listen": "0.0.0.0:18081"},
            "local": {"party": "agency", "type": "api", "listen": "127.0.0.1:18082"},
            "guarded": {"party": "agency", "type": "api", "listen": "[::]:18083",
                        "token": "secret"},
        },
        "pipes": {"main": {"rooms": [{"connector": "open", "room": "a"},
                                     {"connector": "local", "room": "a"},
                                     {"connector": "guarded", "room": "a"}]}},
        "admin": {"listen": "0.0.0.0:19090"},
    })
    done = run_cli("check", "-c", str(path))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "OPEN API" in line]
    assert len(warnings) == 2, done.stderr
    assert "connector open listens on 0.0.0.0:18081 without a token" in warnings[0]
    assert "the admin server listens on 0.0.0.0:19090 without a token" in warnings[1]


async def test_the_daemon_warns_at_start_and_hints_a_reachable_address(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"}},
        "connectors": {"api": {"party": "agency", "type": "api", "listen": f"0.0.0.0:{port}"}},
        "pipes": {"main": {"rooms": [{"connector": "api", "room": "a"},
                                     {"connector": "api", "room": "b"}]}},
    })
    async with running(path, [port]) as daemon:
        await daemon.wait_log(f"http://127.0.0.1:{port}/v1/rooms/b/messages")  # not 0.0.0.0
        log = daemon.log()
        assert f"OPEN API: connector api listens on 0.0.0.0:{port} without a token" in log
        assert f"http://127.0.0.1:{port}/v1/rooms/a/messages" in log
        assert "http://0.0.0.0" not in log
        assert daemon.terminate() == 0


async def test_healthcheck_passes_with_a_running_daemon_and_fails_without(
    tmp_path: Path,
) -> None:
    port, admin = free_port(), free_port()
    path = write_config(tmp_path / "roomlink.yaml", {
        "parties": {"agency": {"store": "sqlite:///agency.db"}},
        "connectors": {"api": {"party": "agency", "type": "api", "listen": f"127.0.0.1:{port}"}},
        "pipes": {"main": {"rooms": [{"connector": "api", "room": "a"},
                                     {"connector": "api", "room": "b"}]}},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": "not-needed-for-health"},
    })
    url = f"http://127.0.0.1:{admin}/healthz"
    async with running(path, [port, admin]) as daemon:
        done = healthcheck(url)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
        assert daemon.terminate() == 0
    done = healthcheck(url)
    assert done.returncode == 1 and "unhealthy" in done.stderr


@pytest.mark.parametrize("command", [["reload"], ["schema"], ["outbox"], ["outbox", "list"],
                                     ["outbox", "retry"]])
def test_help_on_the_operator_commands(command: list[str]) -> None:
    done = run_cli(*command, "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: roomlink")
