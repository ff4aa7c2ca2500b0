"""What the store work of one relayed message costs, in a figure the machine's noise
cannot move: instructions, counted by valgrind's callgrind.

Each message is what the daemon does to two SQLite stores when it relays one message
from agency's API room to acme's: ``append`` in agency's store (the message alone) and in
acme's (the message and its outbox row), then ``mark_delivered`` in acme's. Message ids
and platform ids come from a seeded generator, so two runs of the same code execute the
same statements on the same data.

    .venv/bin/python bench/store_work.py                 # CPU time per message
    .venv/bin/python bench/store_work.py --callgrind     # instructions per message

Without ``--callgrind`` it also prints what the two appends and the mark each cost (CPU
time around each call), and ``--json PATH`` writes those figures for ``compare.py
--bound``.

``--callgrind`` runs this script twice under ``valgrind --tool=callgrind`` (once without
the measured messages, once with them) and prints the difference per message, so that
start-up, imports and the ``--warm`` messages that fill the indexes cancel out. It takes
a minute or two. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from roomlink.message.model import Author, Kind, Message, RoomRef, utcnow
from roomlink.store import NewMessage, open_store
from roomlink.store.chain import canonical

DESTINATION = [RoomRef("acme-api", "lobby")]


async def work(folder: Path, warm: int, n: int, batch: int, random_natives: bool,
               split: dict[str, float] | None = None) -> float:
    """Relay ``warm`` then ``n`` messages' worth of store work; the CPU seconds of the n.
    ``split``, when given, gets the CPU seconds of the n's appends and of their marks."""
    ids = random.Random(1)
    clock = iter(range(1_700_000_000_000_000_000, 1 << 63, 1_000_003))

    def new_id() -> str:
        return uuid.UUID(int=ids.getrandbits(128)).hex

    def new_native() -> str:
        """The API connector's platform id: time-ordered (session 28), or a random UUID
        as before it (``--random-natives``)."""
        if random_natives:
            return new_id()
        return f"{next(clock):016x}{ids.getrandbits(64):016x}"

    def message(i: int) -> Message:
        return Message(id=new_id(), pipe="lobby", kind=Kind.MESSAGE,
                       origin_connector="agency-api", origin_room="lobby",
                       origin_native_id=new_native(), text=f"hello number {i} from the bench",
                       author=Author(name="alice", party="agency", platform="api"),
                       ts=utcnow())

    agency = await open_store("agency", f"sqlite:///{folder}/agency.db")
    acme = await open_store("acme", f"sqlite:///{folder}/acme.db")
    spent = 0.0
    try:
        for start in range(0, warm + n, batch):
            if start == warm:
                began = time.process_time()
            batch_of = [(m, canonical(m)) for m in map(message, range(start, start + batch))]
            t0 = time.process_time()
            await agency.append([NewMessage(m, [], data) for m, data in batch_of])
            rows = await acme.append([NewMessage(m, DESTINATION, data) for m, data in batch_of])
            t1 = time.process_time()
            for [row] in rows:
                await acme.mark_delivered(row.id, [new_id()])
            if split is not None and start >= warm:
                split["append"] = split.get("append", 0.0) + t1 - t0
                split["mark"] = split.get("mark", 0.0) + time.process_time() - t1
        if n:
            spent = time.process_time() - began
    finally:
        await agency.close()
        await acme.close()
    return spent


def instructions(args: argparse.Namespace, n: int) -> int:
    with tempfile.TemporaryDirectory(prefix="roomlink-callgrind-") as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
               sys.executable, __file__, "--warm", str(args.warm), "-n", str(n),
               "--batch", str(args.batch)] + (["--random-natives"] if args.random_natives else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found[1])


def main() -> None:
    p = argparse.ArgumentParser(description="store work per relayed message")
    p.add_argument("-n", type=int, default=1000, help="measured messages")
    p.add_argument("--warm", type=int, default=3000, help="messages appended first")
    p.add_argument("--batch", type=int, default=1, help="messages per append transaction")
    p.add_argument("--callgrind", action="store_true", help="count instructions instead")
    p.add_argument("--random-natives", action="store_true",
                   help="random platform ids, as the API connector made before session 28")
    p.add_argument("--json", metavar="PATH", help="also write the figures (seconds) as JSON")
    args = p.parse_args()
    if args.n % args.batch or args.warm % args.batch:
        p.error("-n and --warm must be multiples of --batch")
    if args.callgrind:
        base, total = instructions(args, 0), instructions(args, args.n)
        print(f"store work: {(total - base) / args.n:,.0f} instructions per relayed message "
              f"(2 appends and 1 mark; {args.batch} per append transaction, after "
              f"{args.warm} messages)")
        return
    split: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="roomlink-store-work-") as tmp:
        spent = asyncio.run(work(Path(tmp), args.warm, args.n, args.batch, args.random_natives,
                                 split))
    if args.n:
        print(f"store work: {spent / args.n * 1e6:.1f} us of CPU per relayed message "
              f"(2 appends and 1 mark; {args.batch} per append transaction, after "
              f"{args.warm} messages; the appends {split['append'] / args.n * 1e6:.1f} us,"
              f" the mark {split['mark'] / args.n * 1e6:.1f} us)")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "store_cpu": spent / args.n, "append_cpu": split["append"] / args.n,
                "mark_cpu": split["mark"] / args.n}))


if __name__ == "__main__":
    main()
