"""`make run`'s launcher with no PostgreSQL, Redis or LLM configured: up, healthy, the demo runs, Ctrl-C cleans up."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.conftest import ROOT, free_port


@pytest.mark.slow
def test_run_brings_up_the_whole_stack_and_stops_it(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env.update({"LOOM_DATA_DIR": str(tmp_path / "var"), "LOOM_PORT": str(port)})
    proc = subprocess.Popen([sys.executable, "-m", "app.devstack"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = ""
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in output and time.monotonic() < deadline and proc.poll() is None:
            output += proc.stdout.readline()
        assert "Press Ctrl-C" in output, output
        url = re.search(r"Loom is running: (\S+)", output).group(1)
        password = re.search(r"Log in as:\s+admin / (\S+)", output).group(1)
        assert url == f"http://127.0.0.1:{port}"
        ready = httpx.get(f"{url}/health/ready").json()
        assert ready["status"] in ("ok", "degraded")  # degraded until Beat's first Ralph tick
        assert ready["checks"]["redis"]["ok"] and ready["checks"]["database"]["ok"]
        assert (tmp_path / "var" / "loom.db").exists()  # SQLite by default
        token = httpx.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}).json()
        headers = {"Authorization": f"Bearer {token['token']}"}
        personas = httpx.get(f"{url}/api/v1/personas", headers=headers)
        assert personas.status_code == 200 and personas.json()["total"] >= 8
        # The demo project's three dependent beads run end to end on the scripted LLM within a minute.
        deadline = time.monotonic() + 60
        statuses: list[str] = []
        while time.monotonic() < deadline:
            beads = httpx.get(f"{url}/api/v1/beads?project_id=1", headers=headers).json()["items"]
            statuses = [b["status"] for b in beads]
            if statuses == ["closed"] * 3:
                break
            time.sleep(0.5)
        assert statuses == ["closed"] * 3, beads
        repo = tmp_path / "var" / "projects" / "1" / "repo"
        tracked = subprocess.run(["git", "ls-tree", "--name-only", "main"], cwd=repo, capture_output=True,
                                 text=True, check=True).stdout.split()
        assert {"calc.py", "test_calc.py", "README.md"} <= set(tracked)  # "direct" strategy: merged into main
        steps = httpx.get(f"{url}/api/v1/beads/2/steps", headers=headers).json()["items"]
        assert any("unittest" in json.dumps(s["actions"]) and s["results"][0]["status"] == "ok" for s in steps)
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for part in ("redis-server", "gunicorn", "worker", "beat"):
            assert part in names, f"{part} not started: {names}"
        # The worker really consumes from the embedded Redis: Beat's Ralph ticks show up as a heartbeat.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Ralph" not in (tmp_path / "var" / "logs" / "worker.log").read_text():
            if "loom.ralph_tick" in (tmp_path / "var" / "logs" / "worker.log").read_text():
                break
            time.sleep(0.5)
        assert "loom.ralph_tick" in (tmp_path / "var" / "logs" / "worker.log").read_text()
        deadline = time.monotonic() + 30  # Beat -> worker -> Ralph's heartbeat, shown by the probe
        while not (ralph := httpx.get(f"{url}/health/ready").json()["ralph"])["ok"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ralph["ok"] and ralph["age_s"] < 30, ralph
        # A worker that dies (the OOM killer, a kill -9) is started again; work goes on.
        [worker] = [c for c in children if "worker" in c.cmdline() and "celery" in " ".join(c.cmdline())]
        worker.kill()
        deadline = time.monotonic() + 30
        while "worker stopped unexpectedly" not in output and time.monotonic() < deadline:
            output += proc.stdout.readline()
        assert "worker stopped unexpectedly (exit code -9); starting it again" in output, output
        after = httpx.post(f"{url}/api/v1/beads", json={"project_id": 1, "title": "after the crash"},
                           headers=headers).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/api/v1/beads/{after['id']}", headers=headers).json()["status"] != "closed":
            assert time.monotonic() < deadline, "the bead created after the worker died never closed"
            time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, f"left running: {child.cmdline()}"
