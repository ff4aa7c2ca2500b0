"""``roomlink`` command line. Exit codes: 0 ok, 2 bad config or usage, 1 runtime failure."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from roomlink import __version__
from roomlink.config import Config, ConfigError, load_config

log = logging.getLogger("roomlink")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="roomlink",
        description="Chat-bridging relay daemon: links rooms of different parties and "
        "platforms through pipes; every party keeps its own record.",
    )
    p.add_argument("--version", action="version", version=f"roomlink {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon", description="Run the daemon until "
                         "SIGTERM/SIGINT; then finish in-flight deliveries and exit 0.")
    run.add_argument("-c", "--config", required=True, help="YAML config file")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)

    check = sub.add_parser("check", help="validate a config file",
                           description="Validate a config; exit 0, or 2 with every error.")
    check.add_argument("-c", "--config", required=True, help="YAML config file")

    hist = sub.add_parser("history", help="read a party's store",
                          description="Read a party's own record of its pipes.")
    hsub = hist.add_subparsers(dest="history_command", required=True, metavar="SUBCOMMAND")
    export = hsub.add_parser("export", help="print a party's record, one JSON object a line",
                             description="Print every message of a party's store in order, "
                             "one JSON object per line.")
    export.add_argument("-c", "--config", required=True, help="YAML config file")
    export.add_argument("--party", required=True, help="whose store to read")
    export.add_argument("--pipe", help="only this pipe")
    export.add_argument("--format", default="jsonl", choices=["jsonl"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"{args.config}: cannot read: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check":
        n = len(config.pipes)
        print(f"{args.config}: ok ({len(config.parties)} parties, "
              f"{len(config.connectors)} connectors, {n} pipe{'s' if n != 1 else ''})")
        return EXIT_OK
    if args.command == "history":
        return _history(config, args.party, args.pipe, sys.stdout)
    return _run(config, args.log_level)


def _run(config: Config, level: str) -> int:
    from roomlink.logsetup import setup_logging

    setup_logging(level, config.secrets())
    try:
        _event_loop_runner()(_serve(config))
    except Exception as exc:
        log.error("%s", exc)
        return EXIT_RUNTIME
    return EXIT_OK


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner where it is installed (it makes the relay faster), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


async def _serve(config: Config) -> None:
    from roomlink.app import Daemon

    daemon = Daemon(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await daemon.start()
        log.info("roomlink %s running: %d pipes, %d connectors", __version__,
                 len(config.pipes), len(config.connectors))
        await stop.wait()
        log.info("stopping: no more input; finishing deliveries in flight")
    finally:
        await daemon.stop()
    log.info("stopped")


def _history(config: Config, party: str, pipe: str | None, out: TextIO) -> int:
    for name, known in (("party", party in config.parties),
                        ("pipe", pipe is None or pipe in config.pipes)):
        if not known:
            value, choices = (party, config.parties) if name == "party" else (pipe, config.pipes)
            hint = difflib.get_close_matches(str(value), list(choices), n=1)
            print(f"unknown {name} {value!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                  file=sys.stderr)
            return EXIT_USAGE
    try:
        asyncio.run(_export(config, party, pipe, out))
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        print(f"roomlink history: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


async def _export(config: Config, party: str, pipe: str | None, out: TextIO) -> None:
    from roomlink.store import open_store

    store = await open_store(party, config.parties[party].store)
    try:
        after = 0
        while page := await store.messages(pipe, after, 1000):
            for seq, message in page:
                record = {"seq": seq, **message.model_dump(mode="json")}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                after = seq
    finally:
        await store.close()
