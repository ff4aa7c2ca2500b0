"""What an admin should hear about a valid config before it runs: where each party's
store is, which store files do not exist yet (a typo in a path silently gives a new,
empty store), and store passwords that a URL cannot hold as written."""

from __future__ import annotations

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
