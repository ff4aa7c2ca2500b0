"""``roomlink history ...`` and ``roomlink keygen``: the party's record on the command line.

Exit codes as everywhere: 0 ok (the record verifies, the records agree, the signature is
valid), 1 a runtime failure or a negative answer (broken chain, records differ, bad
signature), 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from roomlink.config.document import unknown
from roomlink.config.models import Config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _when(end: bool) -> Callable[[str], datetime]:
    def parse(text: str) -> datetime:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a date (2026-11-24) or time (2026-11-24T10:00)") from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if end and len(text) == 10:  # a date: --until includes that whole day
            value += timedelta(days=1)
        return value

    return parse


def add_parsers(sub: Any, hsub: Any) -> None:
    """The record's subcommands, on ``roomlink`` (keygen) and ``roomlink history``."""
    keygen = sub.add_parser(
        "keygen", help="print a new Ed25519 key pair for signed digests",
        description="Print a new Ed25519 key pair as two PEM blocks: the PRIVATE KEY block "
        "is what a party's signing_key takes (put it in an environment variable); the "
        "PUBLIC KEY block, saved to a file, is what `history check-digest --public-key` "
        "takes. With -o PREFIX, writes PREFIX.key (mode 600) and PREFIX.pub instead.")
    keygen.add_argument("-o", "--out", metavar="PREFIX", help="write PREFIX.key and PREFIX.pub")

    def party_cmd(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = hsub.add_parser(name, help=help, description=description)
        p.add_argument("-c", "--config", required=True, help="YAML config file")
        p.add_argument("--party", required=True, help="whose store to read")
        return p

    export = party_cmd("export", "write a party's record (jsonl, html, mbox or text)",
                       "Write every record of a party's store in record order: jsonl (one "
                       "JSON object a line), html (a self-contained transcript), mbox (one "
                       "mail per message, threaded) or text (a plain log). Times are UTC.")
    export.add_argument("--format", default="jsonl", choices=["jsonl", "html", "mbox", "text"],
                        help="jsonl (default), html, mbox or text")
    export.add_argument("--pipe", help="only this pipe")
    export.add_argument("--since", type=_when(False), help="from this date/time (UTC)")
    export.add_argument("--until", type=_when(True),
                        help="up to this date/time (UTC); a date includes the whole day")
    export.add_argument("-o", "--output", help="write to this file (with a progress bar on "
                        "a terminal) instead of standard output")
    export.add_argument("--files", metavar="DIR",
                        help="copy the files of the records written to DIR/<sha256 prefix>/"
                        "<name>; the export links them (html shows images inline, mbox "
                        "attaches them, jsonl gives each its path)")

    verify = party_cmd("verify", "check the hash chains of a party's record",
                       "Recompute every pipe's hash chain; print per pipe the count and head. "
                       "Exit 0 when intact, 1 naming the first break.")
    verify.add_argument("--pipe", help="only this pipe")

    digest = party_cmd("digest", "one line that says what a party's record of a pipe holds",
                       "Print pipe, count, last message id and chain head in one line. Two "
                       "parties' lines are equal exactly when their records agree up to that "
                       "message.")
    digest.add_argument("--pipe", help="the pipe whose record to digest (default: the "
                        "party's only pipe)")
    digest.add_argument("--at", metavar="MESSAGE_ID", help="the digest as of this message")
    digest.add_argument("--sign", action="store_true",
                        help="sign the line with the party's signing_key")

    compare = hsub.add_parser(
        "compare", help="compare two parties' records, or a party's with another's export",
        description="Compare two parties' stores (--party A --party B), or a party's store "
        "with a jsonl export of another instance's record (--party A --against FILE, the "
        "file that `history export --format jsonl` wrote there), position by position: "
        "'agree up to N messages' (exit 0) or where and how they first differ, naming the "
        "message (exit 1). The export's chain is recomputed from its content: an edited "
        "line differs.")
    compare.add_argument("-c", "--config", required=True, help="YAML config file")
    compare.add_argument("--party", required=True, action="append",
                         help="a party (give two, or one with --against)")
    compare.add_argument("--against", metavar="FILE",
                         help="a jsonl export of the same pipe from another instance "
                         "(`roomlink history export --party P --pipe X --format jsonl`)")
    compare.add_argument("--pipe", help="only this pipe (default: every pipe both are in)")

    check = hsub.add_parser("check-digest", help="verify a signed digest line",
                            description="Check the signature of a line printed by "
                            "`history digest --sign` against a public key.")
    check.add_argument("--public-key", required=True, metavar="FILE",
                       help="the PUBLIC KEY PEM block `roomlink keygen` printed")
    check.add_argument("line", help="the signed digest line (quote it)")

    search = party_cmd("search", "full-text search of a party's record",
                       "Find records with every word of QUERY (any language), newest first.")
    search.add_argument("query", metavar="QUERY",
                        help="the words to find (quote several: every one must occur)")
    search.add_argument("--pipe", help="only this pipe")
    search.add_argument("--author", help="only this author (name or platform id)")
    search.add_argument("--since", type=_when(False), help="from this date/time (UTC)")
    search.add_argument("--limit", type=int, default=50, help="at most this many (50)")


def run_without_config(args: argparse.Namespace) -> int:
    """keygen and check-digest need no config."""
    from roomlink.record import sign

    if args.command == "keygen":
        private, public = sign.keygen()
        if args.out:
            key, pub = Path(args.out + ".key"), Path(args.out + ".pub")
            key.touch(mode=0o600, exist_ok=False)
            key.write_text(private)
            pub.write_text(public)
            print(f"wrote {key} (private: keep it secret) and {pub} (public)")
        else:
            sys.stdout.write(private + public)
        return EXIT_OK
    try:
        key_text = Path(args.public_key).read_text()
    except OSError as e:
        print(f"{args.public_key}: cannot read: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        public_key = sign.load_public_key(key_text)
    except sign.BadKey as e:
        print(f"{args.public_key}: {e}", file=sys.stderr)
        return EXIT_USAGE
    ok, what = sign.check(args.line, public_key)
    if ok:
        print(f"valid signature by key {sign.fingerprint(public_key)}: {what}")
        return EXIT_OK
    print(f"INVALID: {what}")
    return EXIT_FAIL


def _known(config: Config, kind: str, value: str | None) -> None:
    choices = config.parties if kind == "party" else config.pipes
    if value is not None and value not in choices:  # as the config's own errors say it
        raise UsageError(unknown(kind, value, list(choices),
                                 "parties" if kind == "party" else "pipes"))


def _pipes_of(config: Config, party: str) -> list[str]:
    """The config's pipes that ``party`` has a room in."""
    return [name for name, pipe in config.pipes.items()
            if any(config.connectors[r.connector].party == party for r in pipe.rooms)]


def _only_pipe(config: Config, party: str) -> str:
    """The party's pipe when it has exactly one (``digest`` without ``--pipe``)."""
    pipes = _pipes_of(config, party)
    if len(pipes) == 1:
        return pipes[0]
    if not pipes:
        raise UsageError(f"party {party} has no room in any pipe of {config.path.name}")
    raise UsageError(f"party {party} is in {len(pipes)} pipes ({', '.join(pipes)}): "
                     "name one with --pipe")


def _no_signing_key(config: Config, party: str) -> UsageError:
    variable = f"{party.upper().replace('-', '_')}_SIGNING_KEY"
    return UsageError(
        f"party {party} has no signing_key in {config.path.name}. To sign: `roomlink keygen "
        f"-o {party}` writes {party}.key (private) and {party}.pub (for whoever checks); put "
        f"the content of {party}.key in the environment variable {variable} and add to "
        f"party {party} in the config:\n"
        f'    signing_key: "${{{variable}}}"')


def run(config: Config, args: argparse.Namespace) -> int:
    cmd = args.history_command
    try:
        parties = args.party if isinstance(args.party, list) else [args.party]
        for party in parties:
            _known(config, "party", party)
        _known(config, "pipe", args.pipe)
        if cmd == "compare" and args.against is not None and len(parties) != 1:
            raise UsageError("compare --against FILE compares one party's record with the "
                             "export: give one --party")
        if cmd == "compare" and args.against is None and (
                len(parties) != 2 or parties[0] == parties[1]):
            raise UsageError("compare takes two different parties (--party A --party B), or "
                             "one party and an export (--party A --against FILE)")
        if cmd == "digest" and args.pipe is None:
            args.pipe = _only_pipe(config, parties[0])
        if cmd == "digest" and args.sign and config.parties[parties[0]].signing_key is None:
            raise _no_signing_key(config, parties[0])
        if cmd == "search" and args.limit < 1:
            raise UsageError("--limit must be at least 1")
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    from roomlink.cli import history_actions as actions

    action: Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]] = getattr(
        actions, cmd.replace("-", "_"))
    try:
        return asyncio.run(action(config, args))
    except BrokenPipeError:
        return EXIT_OK
    except actions.Refused as e:
        print(f"roomlink history {cmd}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        print(f"roomlink history {cmd}: {e}", file=sys.stderr)
        return EXIT_FAIL
