"""Fixtures for the replica tests: a real ngIRCd and IRC users, besides the PostgreSQL
stores (replicakit)."""

import sys
from pathlib import Path

# the IRC test kit (a real ngIRCd, raw IRC users) lives beside the IRC connector's tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "irc"))
from irckit import irc_user, ngircd

__all__ = ["irc_user", "ngircd"]
