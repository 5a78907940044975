"""REST API latency at 50 concurrent clients against the real web server (gunicorn, one process, threads).

The database holds 10,000 beads (bench/seed.py's mix). 50 clients (asyncio, keep-alive: bench/http_load.py,
the admin's bearer token) send requests back to back for a fixed window after a warm-up, in a realistic mix:
40% GET /api/v1/beads?limit=50 (some filtered by project or status), 30% GET a bead by id, 20% GET
/api/v1/beads/ready?limit=50, 10% POST /api/v1/beads. Latency is client-side, request sent →
response read; every answer must be 2xx.

Run: `python -m bench --only api`.
"""
from __future__ import annotations

import asyncio
import random
import time

import psutil

from app.extensions import db
from bench.harness import Bench, Row, percentile
from bench.http_load import Connection, HTTPError
from bench.seed import make_team, seed_beads

CLIENTS = 50
BEADS, QUICK_BEADS = 10_000, 1_000
SECONDS, QUICK_SECONDS = 20.0, 4.0
WARMUP_S = 3.0
MIX = (("list", 0.4), ("get", 0.3), ("ready", 0.2), ("create", 0.1))


def pick_request(rnd: random.Random, project_ids: list[int], beads_n: int) -> tuple[str, str, str, dict | None]:
    """(kind, method, path, json body) drawn from MIX."""
    kind = rnd.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
    if kind == "list":
        filters = rnd.choice(("", f"&project_id={rnd.choice(project_ids)}", "&status=open"))
        return kind, "GET", f"/api/v1/beads?limit=50{filters}", None
    if kind == "get":
        return kind, "GET", f"/api/v1/beads/{rnd.randint(1, beads_n)}", None
    if kind == "ready":
        return kind, "GET", "/api/v1/beads/ready?limit=50", None
    body = {"project_id": rnd.choice(project_ids), "title": f"api bench {rnd.random():.6f}", "priority": 2}
    return kind, "POST", "/api/v1/beads", body


async def client_loop(url: str, token: str, seed: int, project_ids: list[int], beads_n: int,
                      measure_from: float, stop_at: float, out: dict[str, list[float]], errors: list[str]) -> None:
    rnd = random.Random(seed)
    http = Connection(url, {"Authorization": f"Bearer {token}"})
    while (now := time.monotonic()) < stop_at:
        kind, method, path, body = pick_request(rnd, project_ids, beads_n)
        try:
            status, _ = await http.request(method, path, body)
        except HTTPError as exc:  # counted, not fatal: the figure says how many
            errors.append(f"{exc} after {now - measure_from + WARMUP_S:.1f} s")
            continue
        elapsed = time.monotonic() - now
        if status >= 300:
            errors.append(f"{method} {path}: {status}")
        if now >= measure_from:
            out[kind].append(elapsed)
    await http.close()


async def load(url: str, token: str, project_ids: list[int], beads_n: int, seconds: float) -> dict:
    out: dict[str, list[float]] = {kind: [] for kind, _ in MIX}
    errors: list[str] = []
    start = time.monotonic()
    measure_from, stop_at = start + WARMUP_S, start + WARMUP_S + seconds
    await asyncio.gather(*(client_loop(url, token, seed, project_ids, beads_n, measure_from, stop_at, out, errors)
                           for seed in range(CLIENTS)))
    return {"latencies": out, "errors": errors, "seconds": seconds}


def measure(beads_n: int, seconds: float) -> dict:
    with Bench({"rules": []}) as bench:
        with bench.app.app_context():
            project_ids, agent_ids = make_team(10, 5)
            seed_beads(beads_n, project_ids, agent_ids)
            db.session.remove()
        url = bench.start_web(threads=64)
        token = bench.admin_token(url)
        web = [psutil.Process(bench.procs[-1].pid), *psutil.Process(bench.procs[-1].pid).children(recursive=True)]
        web0, own0, started = cpu_seconds(web), time.process_time(), time.monotonic()
        result = asyncio.run(load(url, token, project_ids, beads_n, seconds))
        elapsed = time.monotonic() - started
        result["web_cpu"] = (cpu_seconds(web) - web0) / elapsed * 100
        result["client_cpu"] = (time.process_time() - own0) / elapsed * 100
        return result


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def rows(result: dict, beads_n: int) -> list[Row]:
    every = [v for values in result["latencies"].values() for v in values]
    errors = result["errors"]
    bad = f"{len(errors)} failed (first: {errors[0]})" if errors else "all 2xx"
    out = [Row(f"REST API at {CLIENTS} concurrent clients: latency p50", f"{percentile(every, 0.5) * 1000:.0f} ms",
               f"p99 {percentile(every, 0.99) * 1000:.0f} ms, {len(every) / result['seconds']:.0f} requests/s, "
               f"{beads_n:,} beads, 1 gunicorn process ({result['web_cpu']:.0f}% of a core; the clients "
               f"{result['client_cpu']:.0f}%); {bad}")]
    labels = {"list": "GET /beads?limit=50", "get": "GET /beads/{id}", "ready": "GET /beads/ready",
              "create": "POST /beads"}
    for kind, values in result["latencies"].items():
        out.append(Row(f"  {labels[kind]}: p50", f"{percentile(values, 0.5) * 1000:.0f} ms",
                       f"p99 {percentile(values, 0.99) * 1000:.0f} ms, {len(values)} requests"))
    return out


def run(quick: bool = False) -> list[Row]:
    beads_n = QUICK_BEADS if quick else BEADS
    return rows(measure(beads_n, QUICK_SECONDS if quick else SECONDS), beads_n)
