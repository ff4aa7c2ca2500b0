"""The floor and roomlink in one run, repeated, as ratios: what bench/README.md records.

Each round runs ``floor.py --transport-only`` (bare aiohttp POST -> WebSocket), then
``relay.py`` once per store kind, back to back, so every ratio compares figures taken
minutes apart on the same (possibly shared, noisy) machine. It prints one row per round
and the range of each ratio over the rounds. Run from the repository root::

    .venv/bin/python bench/compare.py [--rounds 3] [-n 2000] [--stores sqlite,postgresql]

A store kind may carry relay.py store options after a colon, e.g.
``postgresql:async_delivery_marks=true``. With ``--matterbridge BIN``, each round also
runs ``matterbridge.py`` (the same client against a Matterbridge binary) and prints each
store kind's CPU per message, burst, hop, hop p99 and peak RSS over Matterbridge's. With
``--bound`` as well, each round also prints the least any roomlink keeping issue 26's
guarantees could spend on aiohttp and SQLite (``least_work``: the bare server plus
``store_work.py``'s appends and mark) over Matterbridge's figures of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOUND = "least any roomlink could (bound)"


def run_json(args: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out, log = Path(tmp) / "out.json", Path(tmp) / "daemon.log"
        cmd = [sys.executable, *args, "--json", str(out)]
        if args[0].endswith("relay.py"):
            cmd += ["--keep-log", str(log)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            if log.exists():
                sys.stderr.write("daemon log:\n" + log.read_text()[-3000:])
            raise SystemExit(f"{' '.join(args)} failed with {proc.returncode}")
        figures: dict[str, float] = json.loads(out.read_text())
        return figures


async def _pg_commit_floor(url: str, samples: int = 100) -> dict[str, float]:
    """Median durable commit (one row) on one connection, and on two at once (two stores
    on one server: each commit waits for its own WAL flush)."""
    import asyncpg  # a dependency of roomlink

    table = f"roomlink_bench_probe_{uuid.uuid4().hex[:8]}"
    conns = [await asyncpg.connect(url) for _ in range(2)]
    try:
        await conns[0].execute(f"CREATE TABLE {table} (x int)")
        out = {}
        for key, use in (("pg_commit", conns[:1]), ("pg_commit_two", conns)):
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                await asyncio.gather(*(c.execute(f"INSERT INTO {table} VALUES (1)") for c in use))
                times.append(time.perf_counter() - t0)
            out[key] = statistics.median(times)
        await conns[0].execute(f"DROP TABLE {table}")
        return out
    finally:
        for c in conns:
            await c.close()


def pg_commit_floor(url: str) -> dict[str, float]:
    return asyncio.run(_pg_commit_floor(url))


def span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if f"{lo:.2f}" == f"{hi:.2f}" else f"{fmt.format(lo)}-{fmt.format(hi)}"


def least_work(floor: dict[str, float], n: int) -> dict[str, float]:
    """What any roomlink that keeps issue 26's guarantees on aiohttp and SQLite must at least
    spend, from figures of this round: the bare aiohttp server (on uvloop, as roomlink
    runs) plus the store work of one relayed message, store_work.py's two appends and one
    delivery mark, nothing else of roomlink counted.

    - CPU per message in the burst: the server's + appends (20 per transaction, more than
      the daemon's batches reach, so this is low) + the mark;
    - burst: one event loop does both, so at most 1 / that CPU; with the stores on the
      machine's other core as well, at most (cores) / (that CPU + the poster's CPU);
    - hop, median and p99: the server's + two one-message appends (the frame goes out
      after both; the appends' mean CPU is added to each);
    - peak RSS: the bare server's, before a store or any of roomlink's modules is loaded.
    """
    burst = run_json(["bench/store_work.py", "-n", "2000", "--warm", str(n), "--batch", "20"])
    serial = run_json(["bench/store_work.py", "-n", "500", "--warm", str(n), "--batch", "1"])
    cpu = floor["tp_cpu"] + burst["append_cpu"] + burst["mark_cpu"]
    cores = len(os.sched_getaffinity(0))
    return {"tp_cpu": cpu, "floor_cpu": floor["tp_cpu"], "append_cpu": burst["append_cpu"],
            "mark_cpu": burst["mark_cpu"],
            "sustained": min(1 / cpu, cores / (cpu + floor["client_cpu"])),
            "hop_median": floor["hop_median"] + serial["append_cpu"],
            "hop_p99": floor["hop_p99"] + serial["append_cpu"],
            "serial_append": serial["append_cpu"], "peak_rss": floor["peak_rss"]}


def print_ratios(label: str, figs: list[dict[str, float]], mbs: list[dict[str, float]]) -> None:
    """Each of issue 26's five figures of ``figs`` over Matterbridge's of the same round."""
    pairs = list(zip(figs, mbs, strict=True))
    print(f"  {label:<40}"
          + "".join(f"  {name}/matterbridge " + span([f[key] / m[key] for f, m in pairs], "{:.2f}")
                    for name, key in (("CPU", "tp_cpu"), ("burst", "sustained"),
                                      ("hop", "hop_median"), ("p99", "hop_p99"),
                                      ("peak RSS", "peak_rss"))))


def print_bound(b: dict[str, float], mb: dict[str, float]) -> None:
    print(f"  {BOUND:<40}"
          f" CPU {b['tp_cpu'] * 1e3:.3f} ms/msg (server {b['floor_cpu'] * 1e3:.3f}"
          f" + appends {b['append_cpu'] * 1e3:.3f} + mark {b['mark_cpu'] * 1e3:.3f};"
          f" {b['tp_cpu'] / mb['tp_cpu']:.2f}x matterbridge)"
          f"  burst <= {b['sustained']:.0f} msg/s ({b['sustained'] / mb['sustained']:.2f}x)"
          f"  hop >= {b['hop_median'] * 1e3:.2f} ms ({b['hop_median'] / mb['hop_median']:.2f}x)"
          f"  p99 >= {b['hop_p99'] * 1e3:.2f} ms ({b['hop_p99'] / mb['hop_p99']:.2f}x)"
          f"  peak RSS >= {b['peak_rss']:.1f} MiB ({b['peak_rss'] / mb['peak_rss']:.2f}x)",
          flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--latency", type=int, default=500)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--stores", default="sqlite,postgresql",
                   help="comma-separated store kinds, each optionally kind:KEY=VALUE")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL admin URL (for relay.py and the commit probe)")
    p.add_argument("--matterbridge", metavar="BIN",
                   help="also run bench/matterbridge.py with this binary in every round")
    p.add_argument("--bound", action="store_true",
                   help="with --matterbridge: also print, each round, the least any roomlink "
                        "on aiohttp and these stores could spend (the bare server on uvloop "
                        "plus store_work.py's appends and mark) over Matterbridge's figures")
    args = p.parse_args()
    if args.bound and not args.matterbridge:
        p.error("--bound needs --matterbridge")
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    floors: list[dict[str, float]] = []
    mbs: list[dict[str, float]] = []
    bounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        floor = run_json(["bench/floor.py", "--transport-only", "-n", str(args.n),
                          "--serial", str(args.latency), *(["--uvloop"] if args.bound else [])])
        if any(k.startswith("postgresql") for k in kinds):
            floor |= pg_commit_floor(args.pg_url)
        floors.append(floor)
        pg = (f"; PostgreSQL durable commit {floor['pg_commit'] * 1e3:.2f} ms,"
              f" two at once {floor['pg_commit_two'] * 1e3:.2f} ms" if "pg_commit" in floor else "")
        print(f"round {r + 1}: floor hop {floor['hop_median'] * 1e3:.2f} ms,"
              f" {floor['sustained']:.0f} msg/s{pg}", flush=True)
        for kind in kinds:
            store, _, option = kind.partition(":")
            extra = ["--store-option", option] if option else []
            fig = run_json(["bench/relay.py", "--store", store, "-n", str(args.n),
                            "--pg-url", args.pg_url,
                            "--latency", str(args.latency), "--warmup", str(args.warmup),
                            "--log-level", "WARNING", *extra])
            fig["floor_hop"], fig["floor_rate"] = floor["hop_median"], floor["sustained"]
            fig["pg_commit_two"] = floor.get("pg_commit_two", 0.0)
            rows[kind].append(fig)
            print(f"  {kind:<40} hop {fig['hop_median'] * 1e3:6.2f} ms"
                  f" ({fig['hop_median'] / floor['hop_median']:.2f}x floor)"
                  f"  p99 {fig['hop_p99'] * 1e3:6.2f} ms"
                  f"  sustained {fig['sustained']:6.0f} msg/s"
                  f" ({fig['sustained'] / floor['sustained']:.2f} of floor)"
                  f"  CPU {fig['tp_cpu'] * 1e3:.3f} ms/msg"
                  f"  RSS start {fig['rss_start']:.0f} MiB, peak {fig['peak_rss']:.0f} MiB"
                  f"  {'OK' if fig['ok'] else 'FAIL'}", flush=True)
        if args.matterbridge:
            mb = run_json(["bench/matterbridge.py", "--bin", args.matterbridge,
                           "-n", str(args.n), "--latency", str(args.latency),
                           "--warmup", str(args.warmup)])
            mbs.append(mb)
            print(f"  {'matterbridge':<40} hop {mb['hop_median'] * 1e3:6.2f} ms"
                  f" ({mb['hop_median'] / floor['hop_median']:.2f}x floor)"
                  f"  p99 {mb['hop_p99'] * 1e3:6.2f} ms  burst {mb['sustained']:6.0f} msg/s"
                  f"  CPU {mb['tp_cpu'] * 1e3:.3f} ms/msg"
                  f"  RSS start {mb['rss_start']:.0f} MiB, peak {mb['peak_rss']:.0f} MiB"
                  f"  arrived {mb['received']}/{args.n}", flush=True)
            if args.bound:
                bound = least_work(floor, args.n)
                bounds.append(bound)
                print_bound(bound, mb)
    print(f"\n== over {args.rounds} rounds (ranges)")
    print(f"  floor: hop {span([f['hop_median'] * 1e3 for f in floors], '{:.2f}')} ms,"
          f" {span([f['sustained'] for f in floors], '{:.0f}')} msg/s")
    if "pg_commit" in floors[0]:
        one = span([f["pg_commit"] * 1e3 for f in floors], "{:.2f}")
        two = span([f["pg_commit_two"] * 1e3 for f in floors], "{:.2f}")
        print(f"  PostgreSQL durable commit {one} ms, two at once {two} ms")
    base = rows[kinds[0]]
    for kind in kinds:
        figs = rows[kind]

        def s(key: str, fmt: str, scale: float = 1.0, figs: list[dict[str, float]] = figs) -> str:
            return span([f[key] * scale for f in figs], fmt)

        hop_f = span([f["hop_median"] / f["floor_hop"] for f in figs], "{:.2f}")
        rate_f = span([f["sustained"] / f["floor_rate"] for f in figs], "{:.2f}")
        line = (f"  {kind:<40} hop/floor {hop_f}  sustained/floor {rate_f}"
                f"  hop {s('hop_median', '{:.2f}', 1e3)} ms  p99 {s('hop_p99', '{:.2f}', 1e3)} ms"
                f"  sustained {s('sustained', '{:.0f}')} msg/s"
                f"  RSS start {s('rss_start', '{:.0f}')} MiB, peak {s('peak_rss', '{:.0f}')} MiB")
        if figs is not base:
            pairs = list(zip(figs, base, strict=True))
            hop_b = span([f["hop_median"] / b["hop_median"] for f, b in pairs], "{:.2f}")
            rate_b = span([f["sustained"] / b["sustained"] for f, b in pairs], "{:.2f}")
            line += f"  hop/{kinds[0]} {hop_b}  sustained/{kinds[0]} {rate_b}"
        if kind.startswith("postgresql") and figs[0]["pg_commit_two"]:
            line += ("  hop/(two commits at once) "
                     + span([f["hop_median"] / f["pg_commit_two"] for f in figs], "{:.2f}"))
        print(line)
    if mbs:
        print("  against matterbridge (issue 26's goals: CPU per message during the burst"
              " <= 0.8x, burst >= 1.0x, hop median <= 1.2x, hop p99 <= 0.5x, peak RSS <= 1.0x)")
        print(f"  {'matterbridge':<40}  CPU {span([m['tp_cpu'] * 1e3 for m in mbs], '{:.3f}')}"
              f" ms/msg  burst {span([m['sustained'] for m in mbs], '{:.0f}')} msg/s"
              f"  hop {span([m['hop_median'] * 1e3 for m in mbs], '{:.2f}')} ms"
              f"  p99 {span([m['hop_p99'] * 1e3 for m in mbs], '{:.2f}')} ms"
              f"  peak RSS {span([m['peak_rss'] for m in mbs], '{:.1f}')} MiB")
        for kind in kinds:
            print_ratios(kind, rows[kind], mbs)
        if bounds:
            print_ratios(BOUND, bounds, mbs)
    return 0 if all(f["ok"] for figs in rows.values() for f in figs) else 1


if __name__ == "__main__":
    sys.exit(main())
