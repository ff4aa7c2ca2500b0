"""Kept for old instructions: ``python -m roomlink_connectors.api.watch URL`` is
``roomlink watch URL`` (see roomlink.cli.watch)."""

from __future__ import annotations

import argparse
import sys

from roomlink.cli.watch import run


def main() -> None:
    p = argparse.ArgumentParser(description="Print an API room's stream (roomlink watch).")
    p.add_argument("url")
    p.add_argument("--token")
    p.add_argument("--after")
    args = p.parse_args()
    sys.exit(run(args.url, args.token, args.after))


if __name__ == "__main__":
    main()
