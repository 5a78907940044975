"""Per-command cost of the sandbox: `true` run N times through run_command, isolated and not.

Rows: bash alone (subprocess, no supervisor), run_command with SANDBOX=off (the supervisor), isolated with no
network (the default), isolated with the host network, and isolated in a worktree of 5000 files (the walk
that hands the workspace to the sandbox uid, after the first time nothing to change).

Run: `python -m bench.sandbox_overhead [-n 50]` (as root, where namespaces are allowed).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from app.services import workspace
from app.services.sandbox import SandboxPolicy, isolation_problem, run_command


def timed(calls: dict, n: int) -> dict[str, list[float]]:
    """Each call n times, interleaved (one of each per round), so load on the machine hits all rows alike."""
    for call in calls.values():
        call()  # warm-up (and the one-off probe)
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            out[name].append((time.perf_counter() - started) * 1000)
    return out


def row(name: str, values: list[float]) -> str:
    p95 = sorted(values)[max(0, int(len(values) * 0.95) - 1)]
    mean, median = statistics.mean(values), statistics.median(values)
    return f"  {name:<44} median {median:7.2f} ms  mean {mean:7.2f}  p95 {p95:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50)
    n = parser.parse_args().n
    problem = isolation_problem(SandboxPolicy())
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        data = Path(tmp)
        workspace.ensure_project_repo(data, 1, None)
        wt = workspace.ensure_worktree(data, 1, 1)
        big = workspace.ensure_worktree(data, 1, 2)
        for i in range(5000):
            (big / f"d{i % 50}").mkdir(exist_ok=True)
            (big / f"d{i % 50}" / f"f{i}.txt").write_text("x")

        def check(result) -> None:
            assert result.exit_code == 0, result.stderr

        calls = {
            "bash -c true (subprocess, no supervisor)": lambda: subprocess.run(["bash", "-c", "true"], check=True),
            "run_command, SANDBOX=off": lambda: check(run_command(wt, "true", policy=SandboxPolicy("off"))),
        }
        if problem is None:
            calls |= {
                "run_command, isolated, network none":
                    lambda: check(run_command(wt, "true", policy=SandboxPolicy("strict"))),
                "run_command, isolated, network host":
                    lambda: check(run_command(wt, "true", policy=SandboxPolicy("strict", "host"))),
                "run_command, isolated, 5000-file worktree":
                    lambda: check(run_command(big, "true", policy=SandboxPolicy("strict"))),
            }
        print(f"Sandbox overhead: `true` x {n}, rows interleaved (uid {os.getuid()}; "
              f"isolation: {problem or 'namespaces'}; load {os.getloadavg()[0]:.1f})")
        for name, values in timed(calls, n).items():
            print(row(name, values))

if __name__ == "__main__":
    main()
