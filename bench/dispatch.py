"""Dispatch latency: a bead created through the REST API → the first LLM request for it reaching the provider.

Beads are created one at a time (POST /api/v1/beads on the real gunicorn server) in a project whose agents
are idle, with a real worker process. The provider (its own process) logs when each request arrived; the
bead's first request is found by the task prompt's `Bead #<id>:` marker. The path measured: commit →
`bead.created` event → dispatch task → claim (the run starts) → first step task → worktree → prompt → LLM.
The bead's and the run's creation times split it in three. Each bead finishes in one turn before the next is created.

Run: `python -m bench --only dispatch`.
"""
from __future__ import annotations

import time

import httpx
import sqlalchemy as sa

from app.extensions import db
from app.models import Bead, Run
from app.services import agents, projects
from bench.harness import Bench, Row, percentile

BEADS, QUICK_BEADS = 50, 8
DONE_AT_ONCE = {"rules": [], "default": {"actions": [{"type": "done", "reason": "ok"}]}}


def first_request_at(bench: Bench, bead_id: int, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in bench.llm.requests():
            if request["bead"] == bead_id:
                return request["t"]
        time.sleep(0.005)
    raise TimeoutError(f"no LLM request for bead {bead_id} within {timeout} s")


def wait_status(bench: Bench, bead_id: int, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with bench.app.app_context():
        while time.monotonic() < deadline:
            if db.session.scalar(sa.select(Bead.status).where(Bead.id == bead_id)) == status:
                db.session.remove()
                return
            db.session.remove()
            time.sleep(0.01)
    raise TimeoutError(f"bead {bead_id} not {status} within {timeout} s")


def measure(beads_n: int) -> dict:
    with Bench(DONE_AT_ONCE) as bench:
        bench.start_workers(1, 8)
        url = bench.start_web(threads=16)
        token = bench.admin_token(url)
        with bench.app.app_context():
            project_id = projects.create_project("dispatch", team=[], git_strategy="branch").id
            for i in range(3):
                agents.create_agent(f"agent-{i}", "engineer", project_id=project_id)
            db.session.remove()
        total, web, claim, start = [], [], [], []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for i in range(beads_n + 1):  # the first one warms up the worker, the repository and the pools
                sent = time.time()
                response = client.post("/api/v1/beads", json={"project_id": project_id, "title": f"dispatch {i}"})
                response.raise_for_status()
                bead_id = response.json()["id"]
                received = first_request_at(bench, bead_id)
                wait_status(bench, bead_id, "closed")
                with bench.app.app_context():
                    created = db.session.scalar(sa.select(Bead.created_at).where(Bead.id == bead_id)).timestamp()
                    started = db.session.scalar(sa.select(Run.started_at).where(Run.bead_id == bead_id)).timestamp()
                    db.session.remove()
                if i:
                    total.append(received - sent)
                    web.append(created - sent)
                    claim.append(started - created)
                    start.append(received - started)
        return {"total": total, "web": web, "claim": claim, "start": start}


def rows(result: dict) -> list[Row]:
    ms = {k: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for k, v in result.items()}
    n = len(result["total"])
    return [
        Row("dispatch latency: bead created -> first LLM request, p50", f"{ms['total'][0]:.0f} ms",
            f"p99 {ms['total'][1]:.0f} ms over {n} beads created one by one (REST API, idle agents, 1 worker)"),
        Row("  POST sent -> bead row written (web), p50", f"{ms['web'][0]:.0f} ms", f"p99 {ms['web'][1]:.0f} ms"),
        Row("  bead row -> claimed (event, dispatch task), p50", f"{ms['claim'][0]:.0f} ms",
            f"p99 {ms['claim'][1]:.0f} ms"),
        Row("  claimed -> LLM request (step task, worktree), p50", f"{ms['start'][0]:.0f} ms",
            f"p99 {ms['start'][1]:.0f} ms"),
    ]


def run(quick: bool = False) -> list[Row]:
    return rows(measure(QUICK_BEADS if quick else BEADS))
