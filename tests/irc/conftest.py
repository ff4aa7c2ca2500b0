"""Fixtures for the IRC connector tests: a real ngIRCd per test, and IRC users."""

from irckit import irc_user, ngircd

__all__ = ["irc_user", "ngircd"]
