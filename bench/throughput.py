"""Throughput: 200 beads x 3 turns at 50 ms per turn, with 1 and with 2 worker processes.

All beads (over 4 projects, 10 idle agents each: 40 loops in flight, more than the threads of any configuration
here) are created first with dispatch off; the clock starts when the dispatch task is sent and stops when the last
bead is closed. Each run gets a fresh database. Two measurements:

1. **Scaling** (acceptance: 2 processes at least 1.7x as fast as 1). Every process a step uses shares this
   machine's cores: the workers, their git, PostgreSQL, Redis and the scripted LLM. Each worker process here runs
   one step at a time (SCALING_THREADS = 1: the unit of a Celery prefork pool), which keeps under half of a 2-core
   machine busy, so a second process has room to add its share; what the ratio shows is whether anything the
   processes share (the database, Redis, the claims locks, dispatch) holds the second one back.
2. **Peak**: PEAK_THREADS threads per process, as many as the machine can keep busy. Here one process already
   keeps most of the cores busy, so the second adds what is left: the row prints that ceiling, the machine's
   cores over the cores the 1-process run kept busy (on a machine of its own each worker would add its own).

Run: `python -m bench --only throughput`.
"""
from __future__ import annotations

import os
import statistics
import time

import psutil
import sqlalchemy as sa

from app.extensions import db
from app.models import Step
from app.services import agents, beads, projects
from bench.harness import Bench, Row, percentile
from bench.loop_overhead import turn_script

BEADS, QUICK_BEADS = 200, 40
TURNS, LATENCY_MS = 3, 50
SCALING_THREADS, PEAK_THREADS = 1, 10
PROJECTS, AGENTS_PER_PROJECT = 4, 10
TARGET = 1.7


def measure(processes: int, threads: int, beads_n: int) -> dict:
    loops = PROJECTS * AGENTS_PER_PROJECT
    # The bench process's own app never dispatches (its events would race the clock); the workers do.
    with Bench(turn_script(TURNS, LATENCY_MS), MAX_CONCURRENT=loops, MAX_PER_PROJECT=AGENTS_PER_PROJECT) as bench:
        bench.app.extensions["loom.event_hooks"].clear()
        bench.start_workers(processes, threads)
        ids = []
        with bench.app.app_context():
            for p in range(PROJECTS):
                project = projects.create_project(f"throughput-{p}", team=[], git_strategy="branch")
                for a in range(AGENTS_PER_PROJECT):
                    agents.create_agent(f"agent-{a}", "engineer", project_id=project.id)
                ids += [beads.create_bead(project.id, f"bead {p}.{i}").id for i in range(beads_n // PROJECTS)]
            db.session.remove()
            workers = [psutil.Process(proc.pid) for proc in bench.procs]
            cpu0, busy0, by0, started = worker_cpu(workers), machine_busy(), cpu_by_process(bench), time.monotonic()
            bench.app.extensions["celery"].send_task("loom.dispatch", queue="default")
        bench.wait_closed(ids, timeout=600)
        elapsed = time.monotonic() - started
        cpu = (worker_cpu(workers) - cpu0) / elapsed * 100
        busy = (machine_busy() - busy0) / elapsed
        by_group = per_group(by0, cpu_by_process(bench))
        gaps = turn_gaps(bench)
        return {"processes": processes, "threads": threads, "beads": len(ids), "elapsed": elapsed,
                "steps": len(gaps) + len(ids), "worker_cpu": cpu, "machine_cores_busy": busy,
                "cpu_by_group": by_group, "beads_per_min": len(ids) / elapsed * 60,
                "steps_per_s": (len(gaps) + len(ids)) / elapsed,
                "gap_p50": percentile(gaps, 0.5) * 1000, "gap_p99": percentile(gaps, 0.99) * 1000}


def worker_cpu(workers: list[psutil.Process]) -> float:
    """CPU seconds of the worker processes so far (their threads included)."""
    return sum(sum(proc.cpu_times()[:2]) for proc in workers)


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process: workers, git, PostgreSQL, Redis, the LLM)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_by_process(bench: Bench) -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds so far) for the processes a loop step uses; a worker's reaped children (git,
    sandboxed commands) are a group of their own."""
    workers, llm, me = {proc.pid for proc in bench.procs}, bench.llm.proc.pid, os.getpid()
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name"]):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        name = proc.info["name"] or ""
        own = times.user + times.system
        if proc.pid in workers:
            out[proc.pid] = ("workers", own)
            out[-proc.pid] = ("their git and commands", times.children_user + times.children_system)
        elif proc.pid == llm:
            out[proc.pid] = ("scripted LLM", own)
        elif proc.pid == me:
            out[proc.pid] = ("this benchmark", own)
        elif name.startswith(("postgres", "postmaster")):
            out[proc.pid] = ("PostgreSQL", own)
        elif name.startswith("redis"):
            out[proc.pid] = ("Redis", own)
    return out


def per_group(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, by group (a process started meanwhile counts from zero)."""
    groups: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        groups[group] = groups.get(group, 0.0) + seconds - before.get(pid, (group, 0.0))[1]
    return groups


def ceiling(one: dict) -> float:
    """The most a second process can add on this machine: its cores over the cores the 1-process run kept busy
    (the workers' database, git, Redis and LLM share the same cores)."""
    return (psutil.cpu_count() or 1) / max(one["machine_cores_busy"], 1e-9)


def turn_gaps(bench: Bench) -> list[float]:
    """Per bead, from one step applied to the provider receiving the next turn's request: the loop's own time
    between LLM calls (Celery hop, database, workspace, and waiting for a free thread), whatever the LLM's
    latency."""
    with bench.app.app_context():
        applied = db.session.execute(sa.select(Step.bead_id, Step.seq, Step.applied_at)
                                     .where(Step.status == "applied")).all()
        db.session.remove()
    by_bead: dict[int, list[float]] = {}
    for request in bench.llm.requests():
        by_bead.setdefault(request["bead"], []).append(request["t"])
    gaps = []
    for bead_id, seq, applied_at in applied:
        times = sorted(by_bead.get(bead_id, []))
        if seq < len(times):  # seq is 1-based: the request after step `seq` is times[seq]
            gaps.append(times[seq] - applied_at.timestamp())
    return gaps


def threads_name(threads: int) -> str:
    return f"{threads} thread{'s' if threads > 1 else ''}"


def processes_name(n: int, threads: int) -> str:
    return f"{n} worker process{'es' if n > 1 else ''} x {threads_name(threads)}"


def rate_row(label: str, runs: list[dict]) -> Row:
    """One configuration: its mean rate over `runs`, each run's own figures in the note."""
    first = runs[0]
    each = "; ".join(f"{r['beads_per_min']:.0f} beads/min in {r['elapsed']:.1f} s, {r['steps_per_s']:.0f} steps/s, "
                     f"workers {r['worker_cpu']:.0f}% of a core, the machine {r['machine_cores_busy']:.2f} cores busy"
                     for r in runs)
    gaps = (f"; gap between turns p50 {statistics.mean(r['gap_p50'] for r in runs):.0f} ms, "
            f"p99 {statistics.mean(r['gap_p99'] for r in runs):.0f} ms")
    return Row(f"{label}, {first['beads']} beads x {TURNS} turns @ {LATENCY_MS} ms, "
               f"{processes_name(first['processes'], first['threads'])}",
               f"{mean_rate(runs):.0f} beads/min", f"{'mean of ' if len(runs) > 1 else ''}{each}{gaps}")


def mean_rate(runs: list[dict]) -> float:
    return statistics.mean(r["beads_per_min"] for r in runs)


def cpu_row(runs: list[dict]) -> Row:
    """CPU per step over the runs of one configuration, by process group."""
    groups: dict[str, float] = {}
    for r in runs:
        for name, seconds in r["cpu_by_group"].items():
            groups[name] = groups.get(name, 0.0) + seconds
    steps, total = sum(r["steps"] for r in runs), sum(groups.values())
    others = total - groups.get("workers", 0.0)
    return Row(f"  CPU per step, {processes_name(runs[0]['processes'], runs[0]['threads'])}",
               f"{total / steps * 1000:.1f} ms",
               ", ".join(f"{name} {seconds / steps * 1000:.1f}" for name, seconds in
                         sorted(groups.items(), key=lambda kv: -kv[1]))
               + f" ms; outside the worker processes {others / max(total, 1e-9):.0%}")


def scaling_rows(ones: list[dict], twos: list[dict]) -> list[Row]:
    ratio = mean_rate(twos) / mean_rate(ones)
    busy_one = statistics.mean(r["machine_cores_busy"] for r in ones)
    busy_two = statistics.mean(r["machine_cores_busy"] for r in twos)
    return [rate_row("throughput", ones), rate_row("throughput", twos), cpu_row(ones), cpu_row(twos),
            Row(f"throughput scaling, 2 / 1 worker processes ({threads_name(SCALING_THREADS)} each)", f"{ratio:.2f}x",
                f"target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'}; the machine "
                f"{busy_one:.2f} / {busy_two:.2f} of {psutil.cpu_count()} cores busy with 1 / 2 processes")]


def peak_rows(one: dict, two: dict) -> list[Row]:
    ratio = two["beads_per_min"] / one["beads_per_min"]
    return [rate_row("peak throughput", [one]), rate_row("peak throughput", [two]),
            Row(f"peak scaling, 2 / 1 worker processes ({threads_name(PEAK_THREADS)} each)", f"{ratio:.2f}x",
                f"bound by this machine's cores: at most about {ceiling(one):.2f}x here ({psutil.cpu_count()} "
                f"cores / {one['machine_cores_busy']:.2f} busy with 1 process); on machines of their own each "
                "process adds its own")]


def run(quick: bool = False) -> list[Row]:
    beads_n = QUICK_BEADS if quick else BEADS
    ones, twos = [measure(1, SCALING_THREADS, beads_n)], [measure(2, SCALING_THREADS, beads_n)]
    peak_one, peak_two = measure(1, PEAK_THREADS, beads_n), measure(2, PEAK_THREADS, beads_n)
    return scaling_rows(ones, twos) + peak_rows(peak_one, peak_two)
