"""Ralph's tick time with 10,000 and 100,000 beads in the database, and how it grows (the ratio).

The database is bulk-loaded with a realistic mix (bench/seed.py). Before every "busy" tick the same rows are
made actionable again (10 expired leases: 5 resumed, 5 reopened; 5 provider blocks to retry; 5 looping
beads to block; 2 zombie agents), so each measured tick does the same work; an "idle" tick finds nothing to
do, which is what most ticks of a healthy installation are. The figure is `ralph.run_tick` itself, called in
this process against the real database and Redis.

Run: `python -m bench --only ralph`.
"""
from __future__ import annotations

import statistics
import time

from app.extensions import db
from app.services import ralph
from bench.harness import Bench, Row
from bench.seed import Actionable, make_team, reset_actionable, seed_beads

SIZES, QUICK_SIZES = (10_000, 100_000), (500, 5_000)
TICKS, QUICK_TICKS = 9, 2
ACTION_KEYS = ("zombies", "reclaimed", "resumed", "blocked", "recovered")


def one_tick(client, actionable: Actionable, busy: bool) -> tuple[float, int]:
    """(milliseconds, actions taken) of one tick; `busy` first restores the actionable rows."""
    if busy:
        reset_actionable(actionable)
    db.session.remove()
    started = time.perf_counter()
    summary = ralph.run_tick(client, ralph.RalphSettings(), provider_healthy=True)
    elapsed = (time.perf_counter() - started) * 1000
    db.session.remove()
    return elapsed, sum(len(summary[key]) for key in ACTION_KEYS)


def measure(sizes: tuple[int, ...], ticks: int) -> list[dict]:
    with Bench({"rules": []}) as bench, bench.app.app_context():
        client = bench.app.extensions["loom.redis"]()
        project_ids, agent_ids = make_team(10, 5)
        actionable: Actionable | None = None
        loaded, results = 0, []
        for size in sizes:  # the larger database contains the smaller one
            started = time.perf_counter()
            actionable = seed_beads(size - loaded, project_ids, agent_ids, first_id=loaded + 1,
                                    actionable=actionable)
            seeded_s, loaded = time.perf_counter() - started, size
            one_tick(client, actionable, busy=True)  # warm-up: caches, plans, connections
            busy = [one_tick(client, actionable, busy=True) for _ in range(ticks)]
            idle = [one_tick(client, actionable, busy=False) for _ in range(ticks)]
            results.append({"beads": size, "seed_s": seeded_s, "busy_ms": statistics.median(t for t, _ in busy),
                            "idle_ms": statistics.median(t for t, _ in idle), "actions": [a for _, a in busy],
                            "idle_actions": [a for _, a in idle], "expected": actionable.count})
        return results


def rows(results: list[dict], ticks: int) -> list[Row]:
    out = []
    for r in results:
        actions = "/".join(str(a) for a in sorted(set(r["actions"])))
        checked = "" if set(r["actions"]) == {r["expected"]} and set(r["idle_actions"]) == {0} else \
            f" (UNEXPECTED: busy {r['actions']}, idle {r['idle_actions']}, wanted {r['expected']} and 0)"
        out.append(Row(f"Ralph tick, {r['beads']:,} beads (median of {ticks})", f"{r['busy_ms']:.1f} ms",
                       f"{actions} actions/tick; idle tick {r['idle_ms']:.1f} ms; "
                       f"seeded in {r['seed_s']:.1f} s{checked}"))
    small, large = results[0], results[-1]
    out.append(Row(f"Ralph tick {large['beads'] // 1000}k / {small['beads'] // 1000 or small['beads']}"
                   f"{'k' if small['beads'] >= 1000 else ''} beads", f"{large['busy_ms'] / small['busy_ms']:.2f}x",
                   f"idle ticks {large['idle_ms'] / small['idle_ms']:.2f}x; "
                   f"{large['beads'] / small['beads']:.0f}x the beads (1.0x = flat)"))
    return out


def run(quick: bool = False) -> list[Row]:
    ticks = QUICK_TICKS if quick else TICKS
    return rows(measure(QUICK_SIZES if quick else SIZES, ticks), ticks)
