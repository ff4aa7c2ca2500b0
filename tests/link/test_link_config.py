"""The federation's config and commands: instance keys, link options, their errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from fedkit import Instance, star

from rlkit import ROOT, run_cli, write_config
from roomlink.record.sign import instance_id, keygen


def test_instance_id_prints_the_public_line_and_the_examples_check(tmp_path: Path) -> None:
    agency, acme = keygen()[0], keygen()[0]
    env = {"ROOMLINK_INSTANCE_KEY": agency, "ACME_INSTANCE_ID": instance_id(acme)}
    done = run_cli("instance-id", "-c", str(ROOT / "examples/federation-agency.yaml"), env=env)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("ed25519:") and "\n" not in line and "PRIVATE" not in done.stdout
    env = {"ROOMLINK_INSTANCE_KEY": acme, "AGENCY_INSTANCE_ID": line}
    done = run_cli("check", "-c", str(ROOT / "examples/federation-acme.yaml"), env=env)
    assert done.returncode == 0, done.stderr


def test_link_mistakes_are_config_errors(tmp_path: Path) -> None:
    host, guest = Instance("agency", tmp_path / "a"), Instance("acme", tmp_path / "b")
    star(host, [guest])
    cases = [
        (lambda c: c.pop("instance"), "a link needs this instance's key"),
        (lambda c: c["connectors"]["to-acme"].pop("peer_parties"), "needs peer_parties"),
        (lambda c: c["connectors"]["to-acme"].update(url="ws://x:1"), "either listen"),
        (lambda c: c["connectors"]["to-acme"].update(peer_key="AAAA"), "instance-id"),
        (lambda c: c["instance"].update(key="not a key"), "Ed25519 private key"),
        (lambda c: c.update(cluster={"enabled": True}), "does not run with cluster.enabled"),
        (lambda c: c["pipes"].update(again={"rooms": [
            {"connector": "agency-api", "room": "hall"},
            {"connector": "to-acme", "room": "project"}]}), "is in pipe project already"),
    ]
    for change, error in cases:
        config = yaml.safe_load(host.path.read_text())
        change(config)
        done = run_cli("check", "-c", str(write_config(tmp_path / "bad.yaml", config)))
        assert done.returncode == 2 and error in done.stderr, (error, done.stderr)
        assert host.key.split("\n")[1] not in done.stderr  # the key is never shown
    done = run_cli("instance-id", "-c", str(guest.path))
    assert done.stdout.strip() == guest.line


def test_check_warns_of_a_pipe_named_apart_and_not_of_a_keyed_listener(tmp_path: Path) -> None:
    host, guest = Instance("agency", tmp_path / "a"), Instance("acme", tmp_path / "b")
    star(host, [guest])
    config = yaml.safe_load(host.path.read_text())
    config["connectors"]["to-acme"]["listen"] = "0.0.0.0:7443"
    config["pipes"] = {"acme-project": config["pipes"]["project"]}
    done = run_cli("check", "-c", str(write_config(tmp_path / "named.yaml", config)))
    assert done.returncode == 0, done.stderr
    assert "pipe acme-project shares conversation 'project' over link to-acme: name the " \
        "pipe 'project' on both instances" in done.stderr
    assert "OPEN API" not in done.stderr
