"""The operator's commands: ``reload``, ``outbox list|retry``, ``schema``; the pid file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TextIO

from roomlink.config import Config, ConfigError
from roomlink.config.document import did_you_mean
from roomlink.store.values import FAILED, PENDING

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
RELOAD_TIMEOUT = 120.0  # seconds; a reload waits for the workers it stops


def add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reload = sub.add_parser(
        "reload", help="make the running daemon re-read its config",
        description="Make the running daemon re-read its config file, without a restart: "
        "through the admin server when the config has one (and print what changed, or the "
        "errors), else by sending SIGHUP to the pid in the pid file.")
    reload.add_argument("-c", "--config", required=True, help="the daemon's YAML config file")
    reload.add_argument("--pid-file", help="as given to `roomlink run --pid-file`")

    sub.add_parser("schema", help="print the config's JSON Schema (for editors)",
                   description="Print the JSON Schema of the config file, including every "
                   "installed connector type's options.")

    outbox = sub.add_parser("outbox", help="list or retry a party's copies to deliver",
                            description="A party's outbox: one row per copy of a message "
                            "for one of its rooms.")
    osub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="SUBCOMMAND")
    listing = osub.add_parser(
        "list", help="one line per copy: message id, room, state, last error",
        description="Print one tab-separated line per copy, oldest first: the message id "
        "(as the API returned it), the room (connector:room), the state and the last "
        "error ('-' when none).")
    retry = osub.add_parser(
        "retry", help="put failed copies back in the queue",
        description="Put failed copies back in the queue, in their original order, with a "
        "fresh retry budget. A running daemon delivers them within seconds, a stopped one "
        "at its next start.")
    for p in (listing, retry):
        p.add_argument("-c", "--config", required=True, help="YAML config file")
        p.add_argument("--party", required=True, help="whose store")
        p.add_argument("--room", help="only this room (a room name, or CONNECTOR:ROOM)")
        p.add_argument("--connector", help="only rooms of this connector")
    listing.add_argument("--state", choices=[FAILED, PENDING, "delivered", "all"],
                         default=FAILED, help="default: failed")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many lines")
    retry.add_argument("--id", help="only the copies of this message id")


# -- schema ------------------------------------------------------------------------------


def print_schema(out: TextIO) -> int:
    from roomlink.config.jsonschema import config_schema

    out.write(json.dumps(config_schema(), indent=2) + "\n")
    return EXIT_OK


# -- pid file and reload -----------------------------------------------------------------


def pid_path(config_path: Path, explicit: str | None = None) -> Path:
    """Where ``run`` writes its pid: --pid-file, ROOMLINK_PID_FILE, or one file per config
    in the temp dir (so that ``reload -c FILE`` finds the daemon of that file)."""
    chosen = explicit or os.environ.get("ROOMLINK_PID_FILE")
    if chosen:
        return Path(chosen)
    digest = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"roomlink-{digest}.pid"


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> PidFile:
        with contextlib.suppress(OSError):  # a read-only place must not stop the daemon
            self.path.write_text(f"{os.getpid()}\n")
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text().strip()) == os.getpid():
                self.path.unlink()


def reload_daemon(config: Config, pid_file: str | None) -> int:
    if config.admin is not None:
        done = _reload_through_admin(config)
        if done is not None:
            return done
    return signal_daemon(config.path, pid_file)


def reload_unchecked(path: str, err: ConfigError, pid_file: str | None) -> int | None:
    """When this shell lacks only some of the daemon's environment variables (secrets
    often live in the daemon's environment alone), the file may still be fine for the
    daemon: signal it, which checks the file with its own environment. None: the file
    itself has errors (the caller prints them)."""
    if not all(i.message.startswith("environment variable ") for i in err.issues):
        return None
    print(f"note: {len(err.issues)} environment variable(s) of {path} are not set here; "
          "the daemon checks the file with its own environment", file=sys.stderr)
    return signal_daemon(Path(path).resolve(), pid_file)


def signal_daemon(config_path: Path, pid_file: str | None) -> int:
    path = pid_path(config_path, pid_file)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"roomlink reload: no running roomlink found for {config_path} "
              f"(pid file {path}: {getattr(exc, 'strerror', None) or exc})", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"sent SIGHUP to roomlink (pid {pid}); it logs what changed, or the errors")
    return EXIT_OK


def _reload_through_admin(config: Config) -> int | None:
    """POST /api/reload; None when the admin server cannot be reached (try the pid)."""
    assert config.admin is not None
    host, _, port = config.admin.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    headers = {"Content-Type": "application/json"}
    if config.admin.token is not None:
        headers["Authorization"] = "Bearer " + config.admin.token.get_secret_value()
    request = urllib.request.Request(f"http://{host}:{port}/api/reload", data=b"{}",
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=RELOAD_TIMEOUT) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            body = json.loads(err.read())
        except ValueError:
            print(f"roomlink reload: the admin server answered {err.code}", file=sys.stderr)
            return EXIT_RUNTIME
        if err.code == 401:  # this shell's token differs: the pid file still works
            print(f"note: the admin server refused the token ({body.get('error')}); "
                  "signalling through the pid file", file=sys.stderr)
            return None
        if err.code != 422:
            print(f"roomlink reload: {body.get('error', err.code)}", file=sys.stderr)
            return EXIT_RUNTIME
    except (OSError, ValueError):
        return None
    if not body.get("ok"):
        print("\n".join(body.get("errors", [])), file=sys.stderr)
        print("roomlink reload: rejected; the daemon keeps its running config", file=sys.stderr)
        return EXIT_USAGE
    for change in body.get("changes", []):
        print(change)
    print("reloaded" if body.get("changes") else "reloaded: nothing changed")
    return EXIT_OK


# -- outbox ------------------------------------------------------------------------------


def outbox_command(config: Config, args: argparse.Namespace) -> int:
    if args.party not in config.parties:
        print(f"unknown party {args.party!r}{did_you_mean(args.party, config.parties)}",
              file=sys.stderr)
        return EXIT_USAGE
    connector, room = args.connector, args.room
    if room is not None and connector is None:
        name, sep, rest = room.partition(":")
        if sep and name in config.connectors:
            connector, room = name, rest
    try:
        if args.outbox_command == "list":
            state = None if args.state == "all" else args.state
            asyncio.run(_list(config, args.party, state, connector, room, args.limit))
        else:
            asyncio.run(_retry(config, args.party, connector, room, args.id))
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        print(f"roomlink outbox: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def _one_line(text: str | None) -> str:
    return "-" if not text else " ".join(text.split())


async def _list(config: Config, party: str, state: str | None, connector: str | None,
                room: str | None, limit: int) -> None:
    from roomlink.store import open_store

    store = await open_store(party, config.parties[party].store)
    try:
        entries = await store.outbox_entries(state, connector, room, None, limit)
    finally:
        await store.close()
    for e in entries:
        print(f"{e.message_id}\t{e.connector}:{e.room}\t{e.state}\t{_one_line(e.last_error)}")
    if not entries:  # an empty answer must not look like a command that did nothing
        copies = f"{state} copies" if state else "copies"
        print(f"no {copies} matched in party {party}'s store{_filters(connector, room)}"
              + ("" if state is None else "; --state all lists every copy"), file=sys.stderr)


def _filters(connector: str | None, room: str | None) -> str:
    """The ``--connector``/``--room`` a listing was narrowed to, as words."""
    if connector and room:
        return f" for room {connector}:{room}"
    if room:
        return f" for room {room}"
    return f" for connector {connector}" if connector else ""


async def _retry(config: Config, party: str, connector: str | None, room: str | None,
                 message_id: str | None) -> None:
    from roomlink.store import open_store

    store = await open_store(party, config.parties[party].store)
    try:
        count = await store.retry_failed(connector, room, message_id)
    finally:
        await store.close()
    if count:
        print(f"{count} failed cop{'y' if count == 1 else 'ies'} of party {party} back in the "
              "queue: a running roomlink delivers them within seconds, a stopped one at its "
              "next start")
    else:
        print(f"no failed copies matched in party {party}'s store")
