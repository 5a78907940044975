"""Two Beat processes (a common deployment mistake) for 60 s: Ralph still runs once per tick."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import redis

from tests.conftest import ROOT
from workers.maintenance import RALPH_RUNS

INTERVAL, DURATION = 3, 60


def test_two_beats_run_ralph_once_per_tick(make_engine, tmp_path):
    engine = make_engine({"rules": []})
    env = {**engine.env(), "LOOM_RALPH_INTERVAL": str(INTERVAL), "LOOM_HEALTH_INTERVAL": "600"}
    client = redis.Redis.from_url(engine.redis_url)
    procs = []
    try:
        for name in ("beat-a", "beat-b"):
            with open(tmp_path / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
                     "-s", str(tmp_path / f"{name}.schedule")],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        with open(tmp_path / "worker.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c", "4",
                 "-Q", "default", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(DURATION)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
    sent = sum(len(re.findall(r"Sending due task ralph-tick", (tmp_path / f"{n}.log").read_text()))
               for n in ("beat-a", "beat-b"))
    ran = int(client.get(RALPH_RUNS) or 0)
    client.close()
    ticks = DURATION / INTERVAL
    print(f"\ntwo beats for {DURATION}s: ralph_tick sent={sent} ran={ran} ticks={ticks:.0f}")
    assert sent >= 1.6 * ticks * 0.8  # both Beats really fired
    assert ticks * 0.7 <= ran <= ticks + 1  # but Ralph ran once per tick
