"""`python -m bench` works: a quick Ralph run prints its table (SQLite, a private Redis), and bad options fail clearly.

No timing is asserted: only that the entry point runs, measures and reports (benchmarks live in bench/).
"""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_BENCH_")}  # SQLite + private Redis
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_quick_ralph_run_prints_its_rows():
    done = bench("--quick", "--only", "ralph")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Loom benchmarks (--quick): ralph" in out
    assert "SQLite" in out and "Redis" in out and "cores" in out  # the machine line
    assert "Ralph tick, 500 beads (median of 2)" in out
    assert "Ralph tick, 5,000 beads (median of 2)" in out
    assert "Ralph tick 5k / 500 beads" in out
    assert out.count("22 actions/tick") == 2  # every busy tick did the seeded work, every idle tick none
    assert "UNEXPECTED" not in out and "FAILED" not in out
    assert "Total:" in out


def test_unknown_benchmark_is_refused():
    done = bench("--only", "ralph,nosuch", timeout=60)
    assert done.returncode == 2
    assert "unknown benchmark(s): nosuch" in done.stderr


def test_quick_throughput_run_prints_the_scaling_and_peak_rows():
    done = bench("--quick", "--only", "throughput", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for row in ("1 worker process x 1 thread", "2 worker processes x 1 thread", "throughput scaling, 2 / 1 worker "
                "processes (1 thread each)", "1 worker process x 10 threads", "peak scaling, 2 / 1 worker processes"):
        assert row in out, row
    assert "40 beads x 3 turns @ 50 ms" in out and "CPU per step" in out and "FAILED" not in out
