"""Loading and checking the config file.

:func:`load_config` reads one YAML file and returns a :class:`Config`, or raises a
:class:`ConfigError` listing every problem found, each with the file, line and key path.
Messages never repeat the offending value: it may be a token.

``${VAR}`` and ``${VAR:-default}`` are replaced in string values (never in keys) after
the YAML is parsed, so an environment value cannot change the document's structure.
``$${`` is a literal ``${``. As in the shell, ``:-`` also applies when VAR is empty.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from roomlink.config.document import ConfigError, ConfigIssue, Loader, Loc, unknown
from roomlink.config.models import (
    STORE_SCHEME,
    AdminConfig,
    ClusterConfig,
    Config,
    ConnectorConfig,
    DeliveryConfig,
    InstanceConfig,
    PartyConfig,
    PipeConfig,
)
from roomlink.connector.base import (
    Connector,
    connector_type_names,
    load_connector_type,
)
from roomlink.message.model import RoomRef

_TOP_KEYS = ("parties", "connectors", "pipes", "delivery", "admin", "cluster", "instance")
_REQUIRED_TOP_KEYS = ("parties", "connectors", "pipes")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]



def _same_socket(a: str, b: str) -> bool:
    """Whether two host:port listen addresses would collide (a wildcard host takes the
    port on every address)."""
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b or not port_a.isdigit():  # not an address: another option's 'listen'
        return False
    wildcard = ("0.0.0.0", "::", "[::]", "*", "")
    return host_a == host_b or host_a in wildcard or host_b in wildcard


# --- loading -------------------------------------------------------------------------


def _resolve_store(url: str, base: Path) -> str:
    match = STORE_SCHEME.match(url)
    if match is None or match["scheme"].lower() != "sqlite":
        return url
    file, sep, query = url[match.end() + 1 :].partition("?")
    if file == ":memory:" or file.startswith("/"):
        return url
    return f"{url[: match.end()]}/{base / file}{sep}{query}"


def _section(loader: Loader, key: str) -> dict[str, Any] | None:
    assert isinstance(loader.data, dict)
    if key not in loader.data:
        if key in _REQUIRED_TOP_KEYS:
            loader.add((key,), f"missing required key '{key}'")
        return None
    value = loader.data[key]
    if not isinstance(value, dict):
        loader.add((key,), f"expected a mapping of names to {key} settings")
        return None
    return value


def load_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    types: Mapping[str, type[Connector]] | None = None,
) -> Config:
    """Read and check the config file; raise :class:`ConfigError` naming every problem.

    ``env`` defaults to ``os.environ``. ``types`` replaces the installed connector types
    (entry points) by the given name -> class map; meant for tests.
    """
    file = str(path)
    config_path = Path(path).resolve()
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(file, None, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(file, None, "", "not a UTF-8 text file")]) from None

    loader = Loader(file, os.environ if env is None else env)
    if not loader.parse(text):
        raise ConfigError(loader.issues)
    data: dict[str, Any] = loader.data
    for key in data:
        if key not in _TOP_KEYS:
            loader.add((key,), unknown("key", key, _TOP_KEYS))

    parties_raw = _section(loader, "parties")
    connectors_raw = _section(loader, "connectors")
    pipes_raw = _section(loader, "pipes")

    parties: dict[str, PartyConfig] = {}
    for name, raw in (parties_raw or {}).items():
        party = loader.validate(PartyConfig, raw, ("parties", name))
        if party is not None:
            store = _resolve_store(party.store, config_path.parent)
            files = party.files and str(config_path.parent / Path(party.files).expanduser())
            state = party.state_dir and str(config_path.parent
                                            / Path(party.state_dir).expanduser())
            parties[name] = party.model_copy(update={"store": store, "files": files,
                                                     "state_dir": state})

    type_names = sorted(types) if types is not None else connector_type_names()
    loaded: dict[str, type[Connector] | None] = {}
    connectors: dict[str, ConnectorConfig] = {}
    for name, raw in (connectors_raw or {}).items():
        base: Loc = ("connectors", name)
        if not isinstance(raw, dict):
            loader.add(base, "expected a mapping with keys party, type and the type's options")
            continue
        party_name = raw.get("party")
        if "party" not in raw:
            loader.add((*base, "party"), "missing required key 'party'")
        elif not isinstance(party_name, str) or not party_name:
            loader.add((*base, "party"), "expected the name of a party")
        elif parties_raw is not None and party_name not in parties_raw:
            loader.add(
                (*base, "party"), unknown("party", party_name, list(parties_raw), "parties")
            )
        type_name = raw.get("type")
        cls: type[Connector] | None = None
        if "type" not in raw:
            loader.add(
                (*base, "type"), f"missing required key 'type' (one of: {', '.join(type_names)})"
            )
        elif not isinstance(type_name, str) or not type_name:
            loader.add(
                (*base, "type"), f"expected a connector type (one of: {', '.join(type_names)})"
            )
        elif type_name not in type_names:
            loader.add(
                (*base, "type"),
                unknown("connector type", type_name, type_names, "installed types"),
            )
        elif type_name in loaded:
            cls = loaded[type_name]
        else:
            try:
                cls = types[type_name] if types is not None else load_connector_type(type_name)
            except Exception as exc:
                loader.add((*base, "type"), f"connector type '{type_name}' failed to load: {exc!r}")
            loaded[type_name] = cls
        if cls is None:
            continue
        option_values = {k: v for k, v in raw.items() if k not in ("party", "type")}
        options = loader.validate(cls.Options, option_values, base, extra_keys=("party", "type"))
        if options is not None and isinstance(party_name, str) and isinstance(type_name, str):
            connectors[name] = ConnectorConfig(party=party_name, type=type_name, options=options)

    pipes: dict[str, PipeConfig] = {}
    for name, raw in (pipes_raw or {}).items():
        pipe = loader.validate(PipeConfig, raw, ("pipes", name))
        rooms = raw.get("rooms") if isinstance(raw, dict) else None
        for index, room in enumerate(rooms if isinstance(rooms, list) else []):
            target = room.get("connector") if isinstance(room, dict) else None
            if connectors_raw is not None and isinstance(target, str) and target:
                if target not in connectors_raw:
                    loader.add(
                        ("pipes", name, "rooms", index, "connector"),
                        unknown("connector", target, list(connectors_raw), "connectors"),
                    )
        if pipe is None:
            continue
        for index, room_config in enumerate(pipe.rooms):
            # the connector type's one spelling of a room (email: its address list,
            # lower-case and sorted), so two spellings of one room are one room
            known = connectors.get(room_config.connector)
            room_cls = loaded.get(known.type) if known is not None else None
            if room_cls is None:
                continue
            try:
                room_config.room = room_cls.normalize_room(room_config.room)
            except ValueError as exc:
                loader.add(("pipes", name, "rooms", index, "room"), str(exc))
        first: dict[RoomRef, int] = {}
        for index, room_config in enumerate(pipe.rooms):
            if room_config.ref in first:
                earlier = first[room_config.ref]
                loader.add(
                    ("pipes", name, "rooms", index),
                    f"room {room_config.ref} is already in this pipe (rooms[{earlier}])",
                )
            first.setdefault(room_config.ref, index)
        pipes[name] = pipe

    # pairs of pipes sharing rooms, found through each room's pipes: comparing every pair
    # of pipes took seconds with a thousand of them
    order = {name: i for i, name in enumerate(pipes)}
    in_pipes: dict[RoomRef, list[str]] = {}
    for name, pipe in pipes.items():
        for ref in {room.ref for room in pipe.rooms}:
            in_pipes.setdefault(ref, []).append(name)
    shared_by: dict[tuple[str, str], set[RoomRef]] = {}
    for ref, names in in_pipes.items():
        for i, first_name in enumerate(names):
            for second_name in names[i + 1 :]:
                shared_by.setdefault((first_name, second_name), set()).add(ref)
    for (first_name, second_name), refs in sorted(
        shared_by.items(), key=lambda item: (order[item[0][0]], order[item[0][1]])
    ):
        if len(refs) >= 2:
            loader.add(
                ("pipes", second_name),
                f"pipes {first_name} and {second_name} share rooms "
                f"{_and([str(ref) for ref in sorted(refs)])}: a message would arrive twice",
            )

    delivery = DeliveryConfig()
    if data.get("delivery") is not None:
        checked = loader.validate(DeliveryConfig, data["delivery"], ("delivery",))
        delivery = checked if checked is not None else delivery

    admin = None
    if data.get("admin") is not None:
        admin = loader.validate(AdminConfig, data["admin"], ("admin",))

    cluster = ClusterConfig()
    if data.get("cluster") is not None:
        checked_cluster = loader.validate(ClusterConfig, data["cluster"], ("cluster",))
        cluster = checked_cluster if checked_cluster is not None else cluster
    if cluster.enabled:
        # the replicas coordinate through the stores' databases: a file on one machine
        # cannot be shared by processes on several
        for name, party in parties.items():
            scheme = STORE_SCHEME.match(party.store)
            if scheme is None or scheme["scheme"].lower() not in ("postgresql", "postgres"):
                loader.add(("parties", name, "store"),
                           "with cluster.enabled every party's store must be PostgreSQL "
                           "(postgresql://...): the replicas share it")
    instance = None
    if data.get("instance") is not None:
        instance = loader.validate(InstanceConfig, data["instance"], ("instance",))
    links = {name for name, cc in connectors.items() if cc.type == "link"}
    for name in sorted(links):
        if instance is None:
            loader.add(("connectors", name), "a link needs this instance's key: "
                       "instance: {key: ...} (`roomlink keygen` prints one)")
        if cluster.enabled:
            # every replica must know which pipes are hosted elsewhere, and only the one
            # running the link would: not yet
            loader.add(("connectors", name), "a link does not run with cluster.enabled yet")
    shared: dict[tuple[str, str], str] = {}
    for pipe_name, pc in pipes.items():
        for i, rc in enumerate(pc.rooms):
            if rc.connector not in links:
                continue
            holder = shared.setdefault((rc.connector, rc.room), pipe_name)
            if holder != pipe_name:
                loader.add(("pipes", pipe_name, "rooms", i), f"the conversation {rc.room!r} "
                           f"of link {rc.connector} is in pipe {holder} already")

    listeners: list[tuple[Loc, str]] = [
        (("connectors", name, "listen"), listen)
        for name, cc in connectors.items()
        if isinstance(listen := getattr(cc.options, "listen", None), str)
    ]
    if admin is not None:
        listeners.append((("admin", "listen"), admin.listen))
    for i, (loc, address) in enumerate(listeners):
        for taken_loc, taken in listeners[:i]:
            if _same_socket(address, taken):
                where = ".".join(str(k) for k in taken_loc[:-1])
                loader.add(loc, f"address {address} is already used by {where} ({taken})")
                break

    if loader.issues:
        unique = list(dict.fromkeys(loader.issues))
        unique.sort(key=lambda issue: issue.line or 0)
        raise ConfigError(unique)
    return Config(
        path=config_path,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        parties=parties,
        connectors=connectors,
        pipes=pipes,
        delivery=delivery,
        admin=admin,
        cluster=cluster,
        instance=instance,
    )
