"""Throughput: 200 beads × 3 turns at 50 ms per turn, with 1 and with 2 worker processes (same threads each).

All beads (over 4 projects, 10 idle agents each: 40 loops in flight, more than the threads of either
configuration) are created first with dispatch off; the clock starts when the dispatch task is sent and
stops when the last bead is closed. Each configuration gets a fresh database. The ratio of the two rates
is the scaling from the second process (acceptance: at least 1.7x). The row also prints the ceiling this
machine puts on that ratio: its cores over the cores the 1-process run kept busy (workers, git, PostgreSQL,
Redis and the scripted LLM all share them), so a 2-core machine whose 1-process run keeps 1.5 cores busy
cannot show more than 1.33x, however well the workers scale.

Run: `python -m bench --only throughput`.
"""
from __future__ import annotations

import os
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
THREADS = 10
PROJECTS, AGENTS_PER_PROJECT = 4, 10
TARGET = 1.7


def measure(processes: int, beads_n: int) -> dict:
    loops = PROJECTS * AGENTS_PER_PROJECT
    # The bench process's own app never dispatches (its events would race the clock); the workers do.
    with Bench(turn_script(TURNS, LATENCY_MS), MAX_CONCURRENT=loops, MAX_PER_PROJECT=AGENTS_PER_PROJECT) as bench:
        bench.app.extensions["loom.event_hooks"].clear()
        bench.start_workers(processes, THREADS)
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
        return {"processes": processes, "beads": len(ids), "elapsed": elapsed, "steps": len(gaps) + len(ids),
                "worker_cpu": cpu, "machine_cores_busy": busy, "cpu_by_group": by_group,
                "beads_per_min": len(ids) / elapsed * 60, "steps_per_s": (len(gaps) + len(ids)) / elapsed,
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
    between LLM calls (Celery hop, database, workspace), whatever the LLM's latency."""
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


def rows(one: dict, two: dict) -> list[Row]:
    ideal = two["beads"] * TURNS * LATENCY_MS / 1000 / THREADS  # 1 process, LLM latency only
    out = [Row(f"throughput, {r['beads']} beads x {TURNS} turns @ {LATENCY_MS} ms, {r['processes']} worker "
               f"process{'es' if r['processes'] > 1 else ''}", f"{r['beads_per_min']:.0f} beads/min",
               f"{r['elapsed']:.1f} s, {r['steps_per_s']:.0f} steps/s, {THREADS} threads/process using "
               f"{r['worker_cpu']:.0f}% of a core in all, the machine {r['machine_cores_busy']:.2f} cores busy; gap "
               f"between turns p50 {r['gap_p50']:.0f} ms, p99 {r['gap_p99']:.0f} ms")
           for r in (one, two)]
    for r in (one, two):
        groups, steps = r["cpu_by_group"], r["steps"]
        total = sum(groups.values())
        others = total - groups.get("workers", 0.0)
        out.append(Row(f"  CPU per step, {r['processes']} worker process{'es' if r['processes'] > 1 else ''}",
                       f"{total / steps * 1000:.1f} ms",
                       ", ".join(f"{name} {seconds / steps * 1000:.1f}" for name, seconds in
                                 sorted(groups.items(), key=lambda kv: -kv[1]))
                       + f" ms; outside the worker processes {others / max(total, 1e-9):.0%}"))
    ratio = two["beads_per_min"] / one["beads_per_min"]
    waiting = " (the 1-process run was not CPU-bound: its worker mostly waited)" if one["worker_cpu"] < 60 else ""
    out.append(Row("throughput scaling, 2 / 1 worker processes", f"{ratio:.2f}x",
                   f"target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'}{waiting}; at most about "
                   f"{ceiling(one):.2f}x here ({psutil.cpu_count()} cores / {one['machine_cores_busy']:.2f} busy "
                   f"with 1 process); LLM-latency bound with 1 process: {ideal:.1f} s"))
    return out


def run(quick: bool = False) -> list[Row]:
    beads_n = QUICK_BEADS if quick else BEADS
    return rows(measure(1, beads_n), measure(2, beads_n))
