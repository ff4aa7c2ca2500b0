"""What an admin should hear about a valid config before it runs: where each party's
store is, which store files do not exist yet (a typo in a path silently gives a new,
empty store), store passwords that a URL cannot hold as written, and listeners that
other machines can reach without a token (an open API by accident)."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from roomlink.config.models import Config
from roomlink.store import urls


@dataclass(frozen=True, slots=True)
class Note:
    level: int  # logging.INFO or logging.WARNING
    text: str


def sqlite_path(store: str) -> Path | None:
    """The file of a ``sqlite:///`` store URL (absolute after load_config), else None."""
    scheme, sep, rest = store.partition("://")
    if not sep or not scheme.lower().startswith("sqlite"):
        return None
    return Path(rest[1:].partition("?")[0])


def store_notes(config: Config) -> list[Note]:
    notes: list[Note] = []
    for party, pc in config.parties.items():
        path = sqlite_path(pc.store)
        if path is None:
            notes.append(Note(logging.INFO, f"party {party}: store {urls.redact(pc.store)}"))
        elif path.exists():
            notes.append(Note(logging.INFO, f"party {party}: store {path}"))
        else:
            folder = "" if path.parent.is_dir() else f" (and its folder {path.parent})"
            notes.append(Note(logging.WARNING, f"party {party}: store {path} does not exist "
                              f"yet; roomlink run creates it{folder}, empty"))
        if urls.unencoded_password(pc.store):
            notes.append(Note(logging.WARNING, f"party {party}: the store password holds "
                              "characters a URL must percent-encode (@ / ? # : % [ ] or a "
                              "space); roomlink reads it up to the last '@', but other "
                              "tools will not: write them as %40 %2F %3F %23 %3A %25 %5B "
                              "%5D %20"))
    return notes


def notes(config: Config) -> list[Note]:
    """Everything ``roomlink check`` and ``roomlink run`` tell before the start."""
    return store_notes(config) + listener_notes(config) + link_notes(config)


def link_notes(config: Config) -> list[Note]:
    """A warning for a pipe that shares a conversation over a federation link under
    another name: the pipe's name is in every message of the record, so the two
    instances' digests could never be equal."""
    found = []
    for pipe_name, pc in config.pipes.items():
        for room in pc.rooms:
            cc = config.connectors.get(room.connector)
            if cc is not None and cc.type == "link" and room.room != pipe_name:
                found.append(Note(logging.WARNING, f"pipe {pipe_name} shares conversation "
                                  f"{room.room!r} over link {room.connector}: name the pipe "
                                  f"{room.room!r} on both instances, or their records differ"))
    return found


def is_loopback(listen: str) -> bool:
    """Whether a ``host:port`` listen address is reachable from this machine only."""
    host = listen.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a wildcard ("", "*") or a host name: assume others reach it
        return False


def listener_notes(config: Config) -> list[Note]:
    """A warning for every listener (a connector's ``listen``, ``admin.listen``) on an
    address other machines can reach that wants no token: inside a container every
    listener binds all addresses, and a published port then takes anyone's requests."""
    open_ones: list[tuple[str, str, str]] = []  # (what, listen, what an intruder can do)
    for name, cc in config.connectors.items():
        listen = getattr(cc.options, "listen", None)
        # a federation link proves its peer's key on every connection: no token needed
        keyed = getattr(cc.options, "peer_key", None) is not None
        if isinstance(listen, str) and getattr(cc.options, "token", None) is None \
                and not keyed and not is_loopback(listen):
            open_ones.append((f"connector {name}", listen,
                              "post, edit and delete messages in its rooms and read them"))
    if config.admin is not None and config.admin.token is None \
            and not is_loopback(config.admin.listen):
        open_ones.append(("the admin server", config.admin.listen,
                          "read the status and metrics and reload the config"))
    return [Note(logging.WARNING, f"OPEN API: {what} listens on {listen} without a token: "
                 f"anyone who reaches that address can {can}; set its token (clients send "
                 "'Authorization: Bearer TOKEN'), or listen on 127.0.0.1 only")
            for what, listen, can in open_ones]
