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
from roomlink.admin.logs import log_format, setup_logging
from roomlink.cli import history as record_commands
from roomlink.cli.admin import (
    PidFile,
    add_operator_commands,
    outbox_command,
    pid_path,
    print_schema,
    reload_daemon,
    reload_unchecked,
)
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
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                     help="the least severe log lines to write (default: INFO)")
    run.add_argument("--log-format", choices=["text", "json"], type=str.lower,
                     help="text (default) or json: one JSON object per line "
                     "(also ROOMLINK_LOG_FORMAT)")
    run.add_argument("--pid-file", help="where to write the process id for `roomlink reload` "
                     "(default: ROOMLINK_PID_FILE, else one per config file in the temp dir)")

    check = sub.add_parser("check", help="validate a config file",
                           description="Validate a config; exit 0, or 2 with every error.")
    check.add_argument("-c", "--config", required=True, help="YAML config file")

    ident = sub.add_parser("instance-id", help="print this instance's public key line",
                           description="Print the public key of the config's instance.key "
                           "as one line, for the other side's link peer_key.")
    ident.add_argument("-c", "--config", required=True, help="YAML config file")

    add_operator_commands(sub)
    watch = sub.add_parser("watch", help="print an API room's stream",
                           description="Print an API room's stream, one line per message.")
    watch.add_argument("url", help="the room's stream, e.g. "
                       "http://127.0.0.1:8082/v1/rooms/lobby/stream")
    watch.add_argument("--token", help="the API connector's token, if it has one")
    watch.add_argument("--after", metavar="MESSAGE_ID",
                       help="first replay what the room received after this message")

    hist = sub.add_parser("history", help="read a party's store",
                          description="Read a party's own record of its pipes.")
    hsub = hist.add_subparsers(dest="history_command", required=True, metavar="SUBCOMMAND")
    record_commands.add_parsers(sub, hsub)
    return p


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 pipe``, ``2 pipes``, ``0 parties``: a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keygen" or getattr(args, "history_command", "") == "check-digest":
        return record_commands.run_without_config(args)
    if args.command == "schema":
        return print_schema(sys.stdout)
    fmt = log_format(getattr(args, "log_format", None)) if args.command == "run" else "text"
    if args.command == "watch":
        from roomlink.cli.watch import run

        return run(args.url, args.token, args.after)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        if args.command == "reload":
            done = reload_unchecked(args.config, err, args.pid_file)
            if done is not None:
                return done
        if fmt == "json":  # even a fatal start error is one JSON object per line
            setup_logging("INFO", (), "json")
            for issue in err.issues:
                log.error("%s", issue, extra={"file": issue.file, "line": issue.line,
                                              "key": issue.path or None})
        else:
            print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"{args.config}: cannot read: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "reload":
        return reload_daemon(config, args.pid_file)
    if args.command == "outbox":
        return outbox_command(config, args)
    if args.command == "instance-id":
        from roomlink.record.sign import instance_id

        if config.instance is None:
            print(f"{args.config}: no instance: {{key: ...}} in this config", file=sys.stderr)
            return EXIT_USAGE
        print(instance_id(config.instance.key.get_secret_value()))
        return EXIT_OK
    if args.command == "check":
        from roomlink.config.preflight import notes

        for note in notes(config):
            if note.level >= logging.WARNING:
                print(f"{args.config}: warning: {note.text}", file=sys.stderr)
        print(f"{args.config}: ok ({counted(len(config.parties), 'party', 'parties')}, "
              f"{counted(len(config.connectors), 'connector')}, "
              f"{counted(len(config.pipes), 'pipe')})")
        return EXIT_OK
    if args.command == "history":
        return record_commands.run(config, args)
    return _run(config, args.log_level, fmt, args.pid_file, args.config)


def _run(config: Config, level: str, fmt: str = "text", pid_file: str | None = None,
         source: str | None = None) -> int:
    setup_logging(level, config.secrets(), fmt)
    from roomlink.config.preflight import notes

    for note in notes(config):
        log.log(note.level, "%s", note.text)
    try:
        with PidFile(pid_path(config.path, pid_file)):
            _event_loop_runner()(_serve(config, source))
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


async def _serve(config: Config, source: str | None = None) -> None:
    from roomlink.daemon.app import Daemon

    daemon = Daemon(config, source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    async def reload_when_started() -> None:
        await started.wait()
        await daemon.reload()

    def reload() -> None:  # SIGHUP: re-read the config (`roomlink reload` sends it)
        task = asyncio.create_task(reload_when_started())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await daemon.start()
        started.set()
        log.info("roomlink %s running: %s, %s", __version__, counted(len(config.pipes), "pipe"),
                 counted(len(config.connectors), "connector"))
        await stop.wait()
        log.info("stopping: no more input; finishing deliveries in flight")
    finally:
        # SIGHUP's default would kill the process; a reload in progress finishes first
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP ignored: stopping")
        for task in reloads:
            if not started.is_set():
                task.cancel()
        await daemon.stop()
    log.info("stopped")
