"""`python -m bench` (`make bench`): run every benchmark and print one table, each row measured in this run.

Uses LOOM_BENCH_DATABASE_URL (a PostgreSQL database that is WIPED) or a fresh SQLite file per benchmark,
and LOOM_BENCH_REDIS_URL (that Redis database is flushed) or a private Redis server started for the run.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import traceback

from bench.harness import Row
from bench.processes import private_redis
from bench.report import CPUWindow, machine_line, table

# name -> module; each module has run(quick: bool) -> list[Row]. Imported only when selected.
BENCHMARKS = {
    "loop": "bench.loop_overhead",
    "dispatch": "bench.dispatch",
    "throughput": "bench.throughput",
    "events": "bench.events",
    "ralph": "bench.ralph",
    "api": "bench.api",
    "idle": "bench.idle",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes and short windows: a smoke run")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = names
    return args


def run_one(name: str, quick: bool) -> tuple[list[Row], bool]:
    """(rows, ok): a failing benchmark becomes a FAILED row, the others still run."""
    started = time.monotonic()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        rows = importlib.import_module(BENCHMARKS[name]).run(quick=quick)
        ok = True
    except Exception as exc:  # noqa: BLE001 - reported as a row and in the exit status
        traceback.print_exc()
        message = (str(exc).splitlines() or [""])[0][:160]
        rows, ok = [Row(f"{name}: FAILED", type(exc).__name__, message)], False
    print(f"[bench] {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    cpu = CPUWindow().start()
    with contextlib.ExitStack() as stack:
        private = not os.environ.get("LOOM_BENCH_REDIS_URL")
        if private:
            os.environ["LOOM_BENCH_REDIS_URL"] = stack.enter_context(private_redis())
        machine = machine_line(os.environ.get("LOOM_BENCH_DATABASE_URL"), os.environ["LOOM_BENCH_REDIS_URL"],
                               private)
        rows, failed = [], []
        for name in args.names:
            got, ok = run_one(name, args.quick)
            rows += got
            if not ok:
                failed.append(name)
        if private:
            del os.environ["LOOM_BENCH_REDIS_URL"]
    elapsed = time.monotonic() - started
    print(f"Loom benchmarks{' (--quick)' if args.quick else ''}: {', '.join(args.names)}")
    print(machine)
    print(table(rows))
    print(cpu.line(elapsed))
    print(f"Total: {elapsed:.0f} s ({elapsed / 60:.1f} min){'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
