"""What each ``roomlink history`` subcommand does, once its arguments are checked."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from roomlink.config.models import Config
from roomlink.record.exportfiles import FileCopier
from roomlink.record.sign import digest_line
from roomlink.record.verify import Walker, check_files, rows_in_order, walk_store
from roomlink.store import Store, open_store

OK, FAIL = 0, 1


class Refused(Exception):
    """A request the record cannot answer as asked (exit 2)."""


@contextlib.asynccontextmanager
async def _store(config: Config, party: str) -> AsyncIterator[Store]:
    settings = config.parties[party]
    store = await open_store(party, settings.store, files=settings.files)
    try:
        yield store
    finally:
        await store.close()


async def export(config: Config, args: argparse.Namespace) -> int:
    from roomlink.record.export import export as run_export

    files = _files_folder(args.files, args.output)
    async with _store(config, args.party) as store:
        if args.output is None:
            await run_export(store, args.format, sys.stdout.buffer, args.pipe, args.since,
                             args.until, files=files)
            sys.stdout.buffer.flush()
            _say_files(files)
            return OK
        from tqdm import tqdm

        total = await store.record_size(args.pipe)
        out: BinaryIO
        # a command, not the daemon: nothing else runs on this loop while it writes
        with open(args.output, "wb") as out, tqdm(  # noqa: ASYNC230
            total=total, unit="msg", unit_scale=True, desc=f"export {args.format}",
            disable=not sys.stderr.isatty(), file=sys.stderr,
        ) as bar:  # fmt: skip
            written = await run_export(store, args.format, out, args.pipe, args.since,
                                       args.until, progress=bar.update, files=files)
        print(f"wrote {written} records to {args.output}", file=sys.stderr)
        _say_files(files)
    return OK


def _files_folder(folder: str | None, output: str | None) -> FileCopier | None:
    """``--files DIR``: the folder, linked from the export relative to where it is."""
    if folder is None:
        return None
    where = os.path.dirname(os.path.abspath(output)) if output else os.getcwd()
    return FileCopier(Path(folder), os.path.relpath(os.path.abspath(folder), where))


def _say_files(files: FileCopier | None) -> None:
    if files is None:
        return
    for att in files.missing:
        print(f"warning: file {att.name!r} (sha256 {att.sha256}) is not in the store: not "
              "copied (`roomlink history verify` names its message)", file=sys.stderr)
    print(f"copied {len(files.copied)} files to {files.folder}", file=sys.stderr)


async def verify(config: Config, args: argparse.Namespace) -> int:
    async with _store(config, args.party) as store:
        walker = await walk_store(store, args.pipe)
        names = [args.pipe] if args.pipe else sorted(set(walker.pipes) | set(walker.anchors))
        broken = False
        for name in names:
            walk = walker.pipe(name)
            if walk.anchor is not None:
                a = walk.anchor
                print(f"{name}: starts from the retention anchor at {a.count} records "
                      f"(cut {a.cut_at:%Y-%m-%d %H:%M} UTC after message {a.message_id}, "
                      f"head {a.head})")
            if walk.broken is not None:
                broken = True
                print(str(walk.broken))
            else:
                print(f"{name}: intact, {walk.count} records, head {walk.head}")
        if not names:
            print(f"party {args.party} has no records" +
                  (f" in pipe {args.pipe}" if args.pipe else ""))
        checked, problems = await check_files(store, args.pipe)
        for problem in problems:
            print(str(problem))
        if checked:
            print(f"files: {checked - len({p.sha256 for p in problems})} of {checked} intact"
                  f" ({store.files.where})")
    return FAIL if broken or problems else OK


async def digest(config: Config, args: argparse.Namespace) -> int:
    async with _store(config, args.party) as store:
        walker = Walker(await store.anchors())
        walk = walker.pipe(args.pipe)
        if args.at is not None:
            row = await store.record_row(args.at)
            if row is None or row.pipe != args.pipe:
                a = walk.anchor
                if a is not None and a.message_id == args.at:
                    pass  # the digest as of the anchor itself
                else:
                    raise Refused(f"party {args.party} has no message {args.at} in pipe "
                                  f"{args.pipe}" + (" (or retention removed it)" if a else ""))
        if args.at is None or walk.last_id != args.at:
            async for r in rows_in_order(store, args.pipe):
                walk.feed(r)
                if r.id == args.at:
                    break
    line = digest_line(*walk.digest_fields())
    if args.sign:
        from roomlink.record.sign import load_private_key, sign

        key = config.parties[args.party].signing_key
        assert key is not None
        line = sign(line, load_private_key(key.get_secret_value()))
    print(line)
    if walk.broken is not None:
        print(f"warning: this record does not verify: {walk.broken}", file=sys.stderr)
        return FAIL
    return OK


async def compare(config: Config, args: argparse.Namespace) -> int:
    from roomlink.record.compare import compare as run_compare

    if args.against is not None:
        return await _compare_against(config, args)
    first, second = args.party
    if args.pipe:
        pipes = [args.pipe]
    else:
        members = {
            name: {config.connectors[r.connector].party for r in pc.rooms}
            for name, pc in config.pipes.items()
        }
        pipes = [n for n, ps in members.items() if first in ps and second in ps]
        if not pipes:
            raise Refused(f"parties {first} and {second} share no pipe")
    failed = False
    async with _store(config, first) as a, _store(config, second) as b:
        for pipe in pipes:
            ok, text = await run_compare(a, b, pipe)
            print(text)
            failed = failed or not ok
    return FAIL if failed else OK


async def _compare_against(config: Config, args: argparse.Namespace) -> int:
    """One party's store against a jsonl export of another instance's record."""
    from roomlink.record.compare import StoreSide, compare_sides
    from roomlink.record.exported import ExportSide, NotAnExport

    party, path = args.party[0], Path(args.against)
    try:
        export = ExportSide.open(path)
    except NotAnExport as e:
        raise Refused(str(e)) from None
    held = ", ".join(export.pipes)
    if args.pipe:
        if args.pipe not in export.pipes:
            raise Refused(f"pipe {args.pipe} is not in {path.name} (it holds: {held})")
        pipes = [args.pipe]
    else:
        mine = {name for name, pc in config.pipes.items()
                if any(config.connectors[r.connector].party == party for r in pc.rooms)}
        pipes = [p for p in export.pipes if p in mine]
        if not pipes:
            raise Refused(f"{path.name} holds no pipe that party {party} is in (it holds: "
                          f"{held}); name one with --pipe")
    failed = False
    async with _store(config, party) as store:
        for pipe in pipes:
            try:
                ok, text = await compare_sides(StoreSide(store), export, pipe)
            except NotAnExport as e:  # the file changed while it was read
                raise Refused(str(e)) from None
            print(text)
            failed = failed or not ok
    return FAIL if failed else OK


async def search(config: Config, args: argparse.Namespace) -> int:
    from roomlink.record.search import EmptyQuery
    from roomlink.record.search import search as run_search

    async with _store(config, args.party) as store:
        try:
            hits = await run_search(store, args.query, args.pipe, args.author, args.since,
                                    args.limit)
        except EmptyQuery as e:
            raise Refused(str(e)) from None
    for h in hits:
        what = f" ({h.kind} of {h.target})" if h.target else ""
        print(f"{h.ts:%Y-%m-%d %H:%M}  {h.author} ({h.party}/{h.platform})  #{h.pipe}  "
              f"{h.id}{what}")
        print("    " + " ".join(h.snippet.split()))
    if not hits:
        print("no matches", file=sys.stderr)
    return OK
