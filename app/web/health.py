"""Liveness and readiness probes (outside /api/v1, public, for load balancers and `make run`)."""
from __future__ import annotations

import time
from datetime import datetime

from flask import Blueprint, current_app
from sqlalchemy import text

from app.extensions import db
from app.models import utcnow
from app.services import ralph, sandbox
from app.web.api import responses as r
from app.web.api.routing import route

bp = Blueprint("health", __name__)


@route(bp, "/health/live", permission=None, tag="health", summary="The web process is up", response=r.Live)
def live():
    return {"status": "ok"}


def _check(probe) -> dict:
    started = time.perf_counter()
    try:
        probe()
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:  # noqa: BLE001 (a probe reports any failure as data, never as a 500)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


@route(bp, "/health/ready", permission=None, tag="health",
       summary="Database and Redis reachable (503 when one is not)", response=r.Ready, other_statuses=(503,))
def ready():
    def database() -> None:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()

    def redis() -> None:
        current_app.extensions["loom.redis"]().ping()

    checks = {"database": _check(database), "redis": _check(redis)}
    ok = all(c["ok"] for c in checks.values())
    cfg = current_app.config
    policy = sandbox.SandboxPolicy.from_settings(cfg["SANDBOX"], cfg["SANDBOX_NETWORK"], cfg["SANDBOX_UID"])
    ralph_state = _ralph()  # informational like the sandbox, but said in `status`: "degraded" while it is not ok
    status = "unavailable" if not ok else "ok" if ralph_state["ok"] else "degraded"
    return {"status": status, "checks": checks, "ralph": ralph_state,
            "sandbox": sandbox.describe(policy)}, 200 if ok else 503


def _ralph() -> dict:
    """Ralph's last tick (informational: Beat may run elsewhere, so it does not fail readiness)."""
    try:
        beat = ralph.last_heartbeat(current_app.extensions["loom.redis"]())
    except Exception as exc:  # noqa: BLE001 (reported, never raised)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    if beat is None:
        return {"ok": False, "error": "no tick in the last 5 minutes (is Beat running?)"}
    age = (utcnow() - datetime.fromisoformat(beat["ts"])).total_seconds()
    return {"ok": age < 3 * current_app.config["RALPH_INTERVAL"] + 5, "last_tick": beat["ts"],
            "age_s": round(age, 1), "duration_ms": beat.get("duration_ms")}
