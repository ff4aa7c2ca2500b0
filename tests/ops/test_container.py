"""The container's health check and its own config, run as they run in the image."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlkit import ROOT, free_port, run_cli, running, write_config


def healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roomlink.admin.healthcheck"], capture_output=True,
                          text=True, timeout=30, env={"ROOMLINK_HEALTH_URL": url})


def test_the_dockerfile_checks_health_and_labels_the_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^HEALTHCHECK .*\\\n\s+CMD \["python", "-m", "roomlink.admin.healthcheck"\]',
                     dockerfile, re.M)
    assert 'LABEL org.opencontainers.image.title="roomlink"' in dockerfile
    assert "COPY docker/roomlink.yaml /config/roomlink.yaml" in dockerfile


def test_the_image_config_is_valid_and_serves_the_health_check() -> None:
    from roomlink.admin.healthcheck import DEFAULT_URL

    done = run_cli("check", "-c", str(ROOT / "docker/roomlink.yaml"))
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((ROOT / "docker/roomlink.yaml").read_text())
    assert DEFAULT_URL == f"http://{config['admin']['listen']}/healthz"
    assert config["admin"]["listen"].startswith("127.0.0.1:")  # private: inside only


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
