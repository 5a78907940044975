"""50 beads of 5 steps on 2 worker processes; a worker is killed with SIGKILL 10 times at random moments.
Every bead must end closed, with no step's effect applied twice and nothing lost."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from app.services import workspace
from tests.conftest import ROOT
from tests.test_engine import Client

BEADS, STEPS, KILLS = 50, 5, 10
SCRIPT = {
    "latency_ms": 120,
    "rules": [{"match": {"turn": list(range(1, STEPS))}, "reply": {"actions": [
        {"type": "write_file", "path": "step{turn}.txt", "content": "bead {bead_id} step {turn}\n"},
        {"type": "git_commit", "message": "bead {bead_id} step {turn}"}]}}],
    "default": {"actions": [{"type": "done", "reason": "all steps done"}]},
}


def _spawn(cmd: list[str], env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app", *cmd], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def worker(env, tmp, n):
    return _spawn(["worker", "-P", "threads", "-c", "24", "-n", f"k{n}-{time.monotonic_ns()}@%h", "-Q", "default",
                   "--loglevel", "WARNING", "--without-gossip", "--without-mingle"], env, tmp / f"worker{n}.log")


def test_kill_minus_nine_loses_nothing_and_repeats_nothing(make_engine, tmp_path):
    engine = make_engine(SCRIPT, LEASE_SECONDS=4, RALPH_INTERVAL=2.0, EVENT_BUFFER=50_000, DEFAULT_TEAM="",
                         MAX_PER_PROJECT=40)
    api = Client(engine.app)
    env = {**engine.env(), "LOOM_RALPH_INTERVAL": "2", "LOOM_EVENT_BUFFER": "50000", "LOOM_MAX_PER_PROJECT": "40"}
    project = api("post", "/projects", json={"name": "kill9", "git_strategy": "branch"})
    for i in range(20):
        api("post", "/agents", json={"name": f"agent-{i}", "persona": "engineer", "project_id": project["id"]})
    rng = random.Random(1234)
    workers = [worker(env, tmp_path, 0), worker(env, tmp_path, 1)]
    beat = _spawn(["beat", "-s", str(tmp_path / "beat-schedule"), "--loglevel", "WARNING"], env, tmp_path / "beat.log")
    try:
        time.sleep(2)
        beads = [api("post", "/beads", json={"project_id": project["id"], "title": f"b{i}"})["id"]
                 for i in range(BEADS)]
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.5))
            n = rng.randrange(2)
            os.kill(workers[n].pid, signal.SIGKILL)
            workers[n].wait()
            workers[n] = worker(env, tmp_path, n)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if api("get", f"/beads?project_id={project['id']}&status=closed")["total"] == BEADS:
                break
            time.sleep(0.5)
    finally:
        for proc in [*workers, beat]:
            proc.terminate()
        for proc in [*workers, beat]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    statuses = Counter(api("get", f"/beads/{b}")["status"] for b in beads)
    repo = workspace.project_dir(engine.data_dir, project["id"]) / "repo"
    duplicates = 0
    for bead_id in beads:
        seqs = [(s["run_id"], s["seq"]) for s in api("get", f"/beads/{bead_id}/steps?limit=100")["items"]]
        duplicates += len(seqs) - len(set(seqs))  # a turn recorded twice (the ledger's unique key forbids it)
        # An effect applied twice would add a file twice (a repeated write changes nothing to commit).
        log = subprocess.run(["git", "log", "--name-status", "--format=", f"bead/{bead_id}"], cwd=repo,
                             capture_output=True, text=True, check=True).stdout.split("\n")
        added = Counter(line.split("\t", 1)[1] for line in log if line.startswith("A\t"))
        duplicates += sum(n - 1 for n in added.values() if n > 1)
        if statuses["closed"] == BEADS:
            assert {f"step{i}.txt" for i in range(1, STEPS)} <= set(added), (bead_id, added)
    events = api("get", f"/events?project_id={project['id']}&type=step.finished&limit=1000")["items"]
    finished = Counter((e["data"]["run_id"], e["data"]["seq"]) for e in events if "error" not in e["data"])
    duplicates += sum(n - 1 for n in finished.values() if n > 1)  # a turn applied (and announced) twice
    lost = BEADS - statuses["closed"]
    runs = [r for b in beads for r in api("get", f"/beads/{b}/runs")["items"]]
    print(f"\nbeads={BEADS} closed={statuses['closed']} duplicates={duplicates} lost={lost} kills={KILLS} "
          f"runs={len(runs)} resumes={sum(r['resumes'] for r in runs)}")
    assert (statuses["closed"], duplicates, lost) == (BEADS, 0, 0), statuses
