"""Flower against Loom's workers out of the box: a real worker process, a real Flower process on the same
Redis, a real bead run; Flower's HTTP API (behind basic auth, as Loom deploys it) shows our tasks by name
with readable arguments, and the worker with Loom's tasks registered."""
from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.test_engine import Client, wait_for
from tests.test_engine_workers import SCRIPT, start_workers, stop

AUTH = ("ops", "flower-password-for-tests")


@pytest.fixture()
def flower(make_engine, tmp_path):
    engine = make_engine(SCRIPT)
    port = free_port()
    env = {**engine.env(), "FLOWER_BASIC_AUTH": ":".join(AUTH)}
    with open(tmp_path / "flower.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
                                 f"--port={port}", "--address=127.0.0.1", "--logging=none"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            try:
                if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield engine, url
    finally:
        proc.terminate()
        proc.wait(15)


def test_flower_shows_loom_tasks_and_workers(flower, tmp_path):
    engine, url = flower
    assert httpx.get(f"{url}/api/tasks", timeout=5).status_code == 401  # the API is not open
    workers = start_workers(engine, 1, tmp_path)
    try:
        api = Client(engine.app)
        project = api("post", "/projects", json={"name": "watched", "git_strategy": "branch"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "watched bead"})
        wait_for(lambda: api("get", f"/beads/{bead['id']}")["status"] == "closed", timeout=90, interval=0.3)
        run_id = api("get", f"/beads/{bead['id']}/runs")["items"][0]["id"]

        def steps_in_flower():
            """Flower to have seen the three steps succeed"""
            tasks = httpx.get(f"{url}/api/tasks", params={"taskname": "loom.step"}, auth=AUTH, timeout=5).json()
            done = [t for t in tasks.values() if t["state"] == "SUCCESS"]
            return done if len(done) >= 3 else None
        steps = wait_for(steps_in_flower, timeout=30, interval=0.5)
        assert {t["name"] for t in steps} == {"loom.step"}
        assert {t["args"] for t in steps} == {f"run_id={run_id}"}  # readable, not "(7,)"
        assert all(t["worker"].startswith("w0@") and t["runtime"] is not None for t in steps), steps
        assert all(t["sent"] is not None for t in steps), steps  # the worker's task-sent events (batched) too
        every = httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=5).json()
        assert "loom.dispatch" in {t["name"] for t in every.values()}
        listed = httpx.get(f"{url}/api/workers", params={"refresh": "true"}, auth=AUTH, timeout=15).json()
        name = next(n for n in listed if n.startswith("w0@"))
        assert {"loom.step", "loom.dispatch", "loom.start_run", "loom.ralph_tick"} <= set(listed[name]["registered"])
        assert [q["name"] for q in listed[name]["active_queues"]] == ["default"]
    finally:
        stop(workers)
