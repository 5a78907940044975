"""Loop overhead and concurrency of the bead action loop.

1. Per-step time with an instant scripted LLM: the Celery loop (a real worker process, one task per
   turn) against the same loop called in-process; the difference is what chaining through Celery costs.
2. 100 beads at once against a provider that takes 1 s per turn: steps/s sustained against the ideal 100.

Run: `python -m bench --only loop` (LOOM_BENCH_DATABASE_URL=postgresql://... to bench on PostgreSQL).
"""
from __future__ import annotations

from app.extensions import db
from app.llm import LLMClient
from app.services import loop
from app.services.loop import LoopSettings
from bench.harness import Bench, Row, median_ms, per_step_intervals

TURNS = 20


def turn_script(turns: int, latency_ms: int) -> dict:
    """Each turn writes a small file (real progress, different every turn), then `done`."""
    return {"latency_ms": latency_ms, "rules": [
        {"match": {"turn": list(range(1, turns))},
         "reply": {"actions": [{"type": "write_file", "path": "progress.txt", "content": "turn {turn}"}]}}],
        "default": {"actions": [{"type": "done", "reason": "ok"}]}}


def in_process(beads_n: int) -> tuple[float, int]:
    with Bench(turn_script(TURNS, 0), AUTO_DISPATCH=False) as bench:
        bead_ids = bench.project_with("inproc", beads_n, 1)
        llm = LLMClient(bench.llm.url, max_retries=0)
        settings = LoopSettings(data_dir=bench.config["DATA_DIR"])
        with bench.app.app_context():
            agent_id = db.session.execute(db.text("SELECT id FROM agents")).scalar()
            for bead_id in bead_ids:
                run = loop.start_run(bead_id, agent_id, settings)
                while loop.run_step(run.id, llm, settings).next_step:
                    pass
                db.session.remove()
        bench.wait_closed(bead_ids, timeout=10)  # every bead really finished
        llm.close()
        intervals = per_step_intervals(bench.step_times())
        return median_ms(intervals), len(intervals)


def celery(beads_n: int) -> tuple[float, int]:
    with Bench(turn_script(TURNS, 0)) as bench:
        bench.start_workers(1, 4)
        bead_ids = bench.project_with("celery", beads_n, 1)
        bench.wait_closed(bead_ids, timeout=300)
        intervals = per_step_intervals(bench.step_times())
        return median_ms(intervals), len(intervals)


def concurrency(beads_n: int, turns: int, latency_ms: int, processes: int) -> dict:
    with Bench(turn_script(turns, latency_ms), MAX_CONCURRENT=beads_n, MAX_PER_PROJECT=beads_n) as bench:
        bench.start_workers(processes, beads_n // processes + 5)  # a thread for every loop in flight
        bead_ids = bench.project_with("many", beads_n, beads_n)
        elapsed = bench.wait_closed(bead_ids, timeout=600)
        times = bench.step_times()
        steady = [t for t in times if t[1] >= 2]  # after each bead's first (workspace-creating) turn
        window = max(t[3] for t in steady) - min(t[2] for t in steady)
        return {"steps": len(times), "elapsed": elapsed, "steady_steps_per_s": len(steady) / window,
                "ideal": beads_n * 1000 / latency_ms}


def rows(inproc: tuple[float, int], celery_: tuple[float, int], conc: dict, beads_n: int, turns: int,
         latency_ms: int, processes: int) -> list[Row]:
    (inproc_ms, n1), (celery_ms, n2) = inproc, celery_
    return [
        Row("per-step time, in-process loop (median)", f"{inproc_ms:.2f} ms", f"{n1} steps, instant LLM"),
        Row("per-step time, Celery loop (median)", f"{celery_ms:.2f} ms", f"{n2} steps, 1 worker process"),
        Row("Celery overhead per step", f"{celery_ms - inproc_ms:+.2f} ms", f"ratio {celery_ms / inproc_ms:.2f}x"),
        Row(f"{beads_n} beads, {latency_ms} ms/turn: steady steps/s", f"{conc['steady_steps_per_s']:.1f}",
            f"{conc['steady_steps_per_s'] / conc['ideal']:.0%} of ideal {conc['ideal']:.0f}"),
        Row(f"{beads_n} beads x {turns} turns, {processes} worker processes: wall time", f"{conc['elapsed']:.1f} s",
            f"ideal {turns * latency_ms / 1000:.1f} s, {conc['steps']} steps"),
    ]


def run(quick: bool = False) -> list[Row]:
    beads_n, concurrent, turns = (1, 20, 3) if quick else (3, 100, 6)
    latency_ms, processes = 1000, 2
    return rows(in_process(beads_n), celery(beads_n), concurrency(concurrent, turns, latency_ms, processes),
                concurrent, turns, latency_ms, processes)

