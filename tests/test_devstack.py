"""`make run`'s launcher on a machine with no PostgreSQL or Redis configured: up, healthy, login works, Ctrl-C cleans up."""
from __future__ import annotations

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
        assert ready["status"] == "ok" and ready["checks"]["redis"]["ok"] and ready["checks"]["database"]["ok"]
        assert (tmp_path / "var" / "loom.db").exists()  # SQLite by default
        token = httpx.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}).json()
        personas = httpx.get(f"{url}/api/v1/personas", headers={"Authorization": f"Bearer {token['token']}"})
        assert personas.status_code == 200 and personas.json()["total"] >= 8
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
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, f"left running: {child.cmdline()}"
