"""Whether Ralph ticks, as an orchestrator sees it (real Redis): the beat container's health check
(`python -m workers.beat_health`) fails once the heartbeat is stale, and /health/ready says "degraded" while
staying ready (Beat may run elsewhere)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from app.models import utcnow
from app.services.ralph import HEARTBEAT_KEY
from tests.conftest import ROOT


def beat_health(redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.beat_health"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "LOOM_REDIS_URL": redis_url}, timeout=60, check=False)


def test_a_stale_heartbeat_fails_the_beat_check_and_degrades_readiness(app, client, redis_url):
    redis_client = app.extensions["loom.redis"]()
    redis_client.set(HEARTBEAT_KEY, json.dumps({"ts": utcnow().isoformat(), "duration_ms": 1.0}), ex=300)
    fresh = beat_health(redis_url)
    assert fresh.returncode == 0, fresh.stderr
    assert client.get("/health/ready").get_json()["status"] == "ok"

    old = (utcnow() - timedelta(seconds=120)).isoformat()
    redis_client.set(HEARTBEAT_KEY, json.dumps({"ts": old, "duration_ms": 1.0}), ex=300)
    stale = beat_health(redis_url)
    assert stale.returncode == 1 and "last tick was 12" in stale.stderr and "35 s" in stale.stderr, stale.stderr
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"

    redis_client.delete(HEARTBEAT_KEY)
    gone = beat_health(redis_url)
    assert gone.returncode == 1 and "no Ralph tick" in gone.stderr
    unreachable = beat_health("redis://127.0.0.1:1/0")
    assert unreachable.returncode == 1 and "cannot read" in unreachable.stderr
