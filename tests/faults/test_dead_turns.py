"""A worker killed in the middle of a turn: Ralph resumes the run about 30 s later (its lock lapsed and the
worker's process is gone), not when the bead's lease runs out (300 s here). A turn that only lost its lock, its
worker still running it, is left alone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import redis

from app.services import turn_watch
from app.services.turns import lock_key
from tests.conftest import ROOT
from tests.test_engine import Client
from tests.test_engine_workers import stop

LEASE_SECONDS = 300
SLEEP_S = 8
SCRIPT = {  # turn 1: a command that takes a while (the turn to kill); turn 2: done
    "rules": [{"match": {"turn": [1]}, "reply": {"actions": [
        {"type": "write_file", "path": "started.txt", "content": "bead {bead_id}\n"},
        {"type": "run_command", "command": f"sleep {SLEEP_S}"}]}}],
    "default": {"actions": [{"type": "done", "reason": "slept"}]},
}


def _spawn(cmd: list[str], env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app", *cmd], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


@dataclass
class Stack:
    env: dict
    api: Client
    project: dict
    redis: redis.Redis
    worker: subprocess.Popen
    beat: subprocess.Popen


def _start(make_engine, tmp_path) -> Stack:
    """An engine with a 300 s lease, one agent, one worker process and Beat firing Ralph every second."""
    engine = make_engine(SCRIPT, LEASE_SECONDS=LEASE_SECONDS, RALPH_INTERVAL=1.0, DEFAULT_TEAM="")
    env = {**engine.env(), "LOOM_RALPH_INTERVAL": "1"}
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": "dead turns"})
    api("post", "/agents", json={"name": "sleeper", "persona": "engineer", "project_id": project["id"]})
    return Stack(env, api, project, redis.Redis.from_url(engine.redis_url), _worker(env, tmp_path),
                 _spawn(["beat", "-s", str(tmp_path / "beat-schedule"), "--loglevel", "WARNING"], env,
                        tmp_path / "beat.log"))


def _worker(env, tmp_path) -> subprocess.Popen:  # always the same node name, as `make run` restarts it
    return _spawn(["worker", "-P", "threads", "-c", "4", "-n", "turns@%h", "-Q", "default", "--loglevel", "INFO",
                   "--without-gossip", "--without-mingle"], env, tmp_path / "worker.log")


def _noted_turn(client: redis.Redis, timeout_s: float = 60) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_id, note in client.hgetall(turn_watch.IN_FLIGHT_KEY).items():
            fields = json.loads(note)
            if fields["seq"] == 1:
                return int(run_id), fields
        time.sleep(0.1)
    raise AssertionError("no turn noted itself in Redis")


def _wait_closed(api, bead_id: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if api("get", f"/beads/{bead_id}")["status"] == "closed":
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"bead {bead_id} not closed within {timeout_s} s: {api('get', f'/beads/{bead_id}')}")


def _run(api, bead_id: int, run_id: int) -> dict:
    runs = api("get", f"/beads/{bead_id}/runs")["items"]
    assert [r["id"] for r in runs] == [run_id], runs  # one run all along: resumed, never restarted
    return runs[0]


def _lost_turn_actions(api, project_id: int) -> list[dict]:
    events = api("get", f"/events?project_id={project_id}&type=ralph.action&limit=500")["items"]
    return [e for e in events if e["data"]["action"] == "turn_lost"]


def test_a_worker_killed_mid_turn_is_resumed_long_before_the_lease_ends(make_engine, tmp_path):
    stack = _start(make_engine, tmp_path)
    api, project, client = stack.api, stack.project, stack.redis
    try:
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "sleep"})
        run_id, note = _noted_turn(client)
        assert note["pid"] == stack.worker.pid and note["node"].startswith("turns@")
        time.sleep(1)  # inside the command now
        os.kill(stack.worker.pid, signal.SIGKILL)
        stack.worker.wait()
        killed = time.monotonic()
        stack.worker = _worker(stack.env, tmp_path)  # the same node name again, another process
        took = _wait_closed(api, bead["id"], 150)
    finally:
        stop([stack.worker, stack.beat])
    run = _run(api, bead["id"], run_id)
    print(f"\nclosed {took:.1f} s after the kill (lease {LEASE_SECONDS} s); resumes={run['resumes']}")
    assert time.monotonic() - killed < LEASE_SECONDS / 2  # the lease never ran out: Ralph saw the turn die
    assert run["resumes"] == 1 and run["status"] == "finished"
    lost = _lost_turn_actions(api, project["id"])
    assert len(lost) == 1 and f"run {run_id}:" in lost[0]["data"]["message"], lost
    assert client.hget(turn_watch.IN_FLIGHT_KEY, str(run_id)) is None  # every note removed in the end


def test_a_turn_that_lost_its_lock_but_goes_on_is_not_resumed(make_engine, tmp_path):
    stack = _start(make_engine, tmp_path)
    api, project, client = stack.api, stack.project, stack.redis
    try:
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "sleep"})
        run_id, _ = _noted_turn(client)
        assert client.delete(lock_key(run_id)) == 1  # as when Redis was away longer than the lock lives
        _wait_closed(api, bead["id"], 120)  # the turn is judged at least once (5 s old, ticks every second)
    finally:
        stop([stack.worker, stack.beat])
    run = _run(api, bead["id"], run_id)
    assert run["resumes"] == 0 and run["status"] == "finished"
    assert _lost_turn_actions(api, project["id"]) == []
    ticks = int(client.get("loom:ralph:runs") or 0)
    assert ticks >= SLEEP_S - turn_watch.MIN_AGE_S, ticks  # Ralph did look while the turn went on without its lock
