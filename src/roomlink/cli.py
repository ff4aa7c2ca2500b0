"""``roomlink`` command line. Exit codes: 0 ok, 2 bad config or usage, 1 runtime failure."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from roomlink import __version__
from roomlink.config import Config, ConfigError, load_config
from roomlink.record import commands as record_commands

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
    record_commands.add_parsers(sub, hsub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keygen" or getattr(args, "history_command", "") == "check-digest":
        return record_commands.run_without_config(args)
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
        return record_commands.run(config, args)
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
