"""The JSON Schema of the whole config file, for editors (``roomlink schema``).

Built from the same pydantic models that ``roomlink check`` validates with, including
every installed connector type's options, and refusing unknown keys at every level and
per connector type as ``check`` does. ``${VAR}`` references are replaced after the YAML
is read, so a schema cannot see them: keep them inside strings, as in the examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from roomlink import __version__
from roomlink.config.models import (
    AdminConfig,
    ClusterConfig,
    DeliveryConfig,
    InstanceConfig,
    PartyConfig,
    PipeConfig,
)
from roomlink.connector.base import Connector, connector_type_names, load_connector_type

SCHEMA_ID = "https://roomlink.invalid/schema/config.json"  # a name, not a download


def _model(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    """The model's schema with its nested definitions moved into the shared ``$defs``."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def _strict(node: Any) -> None:
    """additionalProperties: false on every object schema that lists its properties."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)


def config_schema(types: Mapping[str, type[Connector]] | None = None) -> dict[str, Any]:
    if types is None:
        types = {name: load_connector_type(name) for name in connector_type_names()}
    defs: dict[str, Any] = {}
    party = _model(PartyConfig, defs)
    pipe = _model(PipeConfig, defs)
    delivery = _model(DeliveryConfig, defs)
    admin = _model(AdminConfig, defs)
    cluster = _model(ClusterConfig, defs)
    instance = _model(InstanceConfig, defs)
    room = defs.get("RoomConfig", {}).get("properties", {}).get("room")
    if room is not None:  # a Telegram chat id may be written as a YAML number
        room.pop("type", None)
        room["anyOf"] = [{"type": "string", "minLength": 1}, {"type": "integer"}]

    names = sorted(types)
    per_type: list[dict[str, Any]] = []
    for name in names:
        options = _model(types[name].Options, defs)
        properties = {
            "party": {"type": "string", "description": "the party that owns this connector"},
            "type": {"const": name},
            **options.get("properties", {}),
        }
        per_type.append({
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {
                "title": f"{name} connector",
                "properties": properties,
                "required": ["party", "type", *options.get("required", [])],
                "additionalProperties": False,
            },
        })
    # the keys allowed depend on the type: each type's "then" lists them all and refuses
    # the rest, so the outer object lists none itself
    connector = {
        "type": "object",
        "description": "one account on one platform, owned by one party",
        "required": ["party", "type"],
        "allOf": [
            {"properties": {"type": {"enum": names, "description": "an installed type"}}},
            *per_type,
        ],
    }
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"roomlink config (roomlink {__version__})",
        "type": "object",
        "required": ["parties", "connectors", "pipes"],
        "additionalProperties": False,
        "properties": {
            "parties": {"type": "object", "description": "each party and its store",
                        "additionalProperties": party},
            "connectors": {"type": "object", "additionalProperties": connector},
            "pipes": {"type": "object", "description": "named links between rooms",
                      "additionalProperties": pipe},
            "delivery": {"anyOf": [delivery, {"type": "null"}]},
            "admin": {"anyOf": [admin, {"type": "null"}]},
            "cluster": {"anyOf": [cluster, {"type": "null"}]},
            "instance": {"anyOf": [instance, {"type": "null"}]},
        },
        "$defs": defs,
    }
    _strict(schema)
    return schema
