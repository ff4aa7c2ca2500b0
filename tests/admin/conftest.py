"""Fixtures for the operations tests: a real ngIRCd (a platform that can go down and
refuse messages) and IRC users in it."""

import sys
from pathlib import Path

# the IRC test kit (a real ngIRCd, raw IRC users) lives beside the IRC connector's tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "irc"))
from irckit import irc_user, ngircd

__all__ = ["irc_user", "ngircd"]
