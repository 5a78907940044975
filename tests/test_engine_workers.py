"""Two worker processes, two agents, ten ready beads: no bead runs twice, no agent holds two beads at once."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.test_engine import Client, wait_for

SCRIPT = {
    "latency_ms": 50,
    "rules": [
        {"match": {"turn": 1},
         "reply": {"actions": [{"type": "write_file", "path": "b{bead_id}.txt", "content": "x"}]}},
        {"match": {"turn": 2}, "reply": {"actions": [{"type": "git_commit", "message": "bead {bead_id}"}]}},
        {"match": {"turn": 3}, "reply": {"actions": [{"type": "done", "reason": "ok"}]}},
    ],
}


def start_workers(engine, count: int, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for n in range(count):
        with open(log_dir / f"worker{n}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c", "4",
                 "-n", f"w{n}@%h", "-Q", "default", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=engine.env(), stdout=log, stderr=subprocess.STDOUT))
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ten_beads_two_agents_two_worker_processes(make_engine, tmp_path):
    engine = make_engine(SCRIPT, DEFAULT_TEAM="engineer,qa-engineer")
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": "pair", "git_strategy": "branch"})
    agents = api("get", f"/agents?project_id={project['id']}")["items"]
    assert len(agents) == 2
    procs = start_workers(engine, 2, tmp_path)
    try:
        beads = [api("post", "/beads", json={"project_id": project["id"], "title": f"task {i}"}) for i in range(10)]

        def all_closed():
            """ten beads to close"""
            return api("get", f"/beads?project_id={project['id']}&status=closed")["total"] == 10
        wait_for(all_closed, timeout=120, interval=0.3)
    finally:
        stop(procs)
    logs = "".join((tmp_path / f"worker{n}.log").read_text() for n in range(2))
    assert "Traceback" not in logs, logs[-3000:]
    held: dict[int, list[tuple[str, str, int]]] = {}  # agent -> (claimed, released, bead)
    for bead in beads:
        runs = api("get", f"/beads/{bead['id']}/runs")["items"]
        assert [(r["status"], r["iterations"]) for r in runs] == [("finished", 3)], (bead["id"], runs)
        steps = api("get", f"/beads/{bead['id']}/steps")["items"]
        assert [s["seq"] for s in steps] == [1, 2, 3]  # every LLM turn ran exactly once
        closed_at = api("get", f"/beads/{bead['id']}")["closed_at"]  # closing is what frees the agent
        held.setdefault(runs[0]["agent_id"], []).append((runs[0]["started_at"], closed_at, bead["id"]))
    assert set(held) <= {a["id"] for a in agents}
    for spans in held.values():  # an agent never holds two beads at once
        spans.sort()
        for earlier, later in zip(spans, spans[1:], strict=False):
            assert earlier[1] <= later[0], (earlier, later)
    assert len(engine.llm.requests) == 30
