"""``roomlink schema``: the JSON Schema an editor uses, checked with ``jsonschema``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rlkit import ROOT, run_cli

EXAMPLES = [ROOT / "config.example.yaml", ROOT / "docker/roomlink.yaml",
            ROOT / "docker/replicas/roomlink.yaml",
            *sorted((ROOT / "examples").glob("*.yaml"))]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    done = run_cli("schema")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(found)
    return found


def errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    found = []
    for error in validator.iter_errors(document):  # with the reasons behind an anyOf
        for e in [error, *error.context]:
            found.append(f"{list(e.absolute_path)}: {e.message}")
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_shipped_configs_are_valid(schema: dict[str, Any], path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert errors(schema, document) == []


def test_the_example_config_names_the_schema_for_editors() -> None:
    first = (ROOT / "config.example.yaml").read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")


def test_every_installed_connector_type_and_its_options_are_in_it(
    schema: dict[str, Any],
) -> None:
    connector = schema["properties"]["connectors"]["additionalProperties"]
    titles = {rule["then"]["title"] for rule in connector["allOf"] if "then" in rule}
    assert {"api connector", "irc connector"} <= titles
    irc = next(r["then"] for r in connector["allOf"] if r.get("then", {}).get("title")
               == "irc connector")
    assert {"server", "nick", "line_interval", "sasl"} <= set(irc["properties"])
    assert "server" in irc["required"] and irc["additionalProperties"] is False


def _nodes(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _nodes(value)
    elif isinstance(node, list):
        for value in node:
            found += _nodes(value)
    return found


def test_no_object_takes_unknown_keys(schema: dict[str, Any]) -> None:
    for node in _nodes(schema):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, node


BROKEN: list[tuple[str, Any, str]] = [
    ("a typo at the top", lambda d: d.update(pipe={}), "'pipe' was unexpected"),
    ("a typo in a room", lambda d: d["pipes"]["acme-project"]["rooms"][0].update(rom="x"),
     "'rom' was unexpected"),
    ("an option of another type", lambda d: d["connectors"]["agency-api"].update(nick="x"),
     "'nick' was unexpected"),
    ("an IRC option misspelt", lambda d: d["connectors"]["contractor-irc"].update(sever="x"),
     "'sever' was unexpected"),
    ("a type nobody installed", lambda d: d["connectors"]["acme-api"].update(type="carrier-pigeon"),
     "'carrier-pigeon' is not one of"),
    ("a number that is text", lambda d: d["delivery"].update(max_attempts="many"),
     "'many' is not of type 'integer'"),
    ("a pipe without rooms", lambda d: d["pipes"]["acme-project"].pop("rooms"),
     "'rooms' is a required property"),
    ("a connector without its party",
     lambda d: d["connectors"]["agency-api"].pop("party"), "'party' is a required property"),
]


@pytest.mark.parametrize(("what", "damage", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_config_is_rejected(
    schema: dict[str, Any], what: str, damage: Any, message: str
) -> None:
    document = copy.deepcopy(yaml.safe_load((ROOT / "config.example.yaml").read_text()))
    damage(document)
    found = errors(schema, document)
    assert any(message in e for e in found), found
