"""Ralph, the maintenance loop: reclaims beads whose lease ran out (their worker died) and records a heartbeat."""
from __future__ import annotations

import json
import time
from datetime import datetime

from sqlalchemy import select, update

from app.extensions import db
from app.models import Agent, Bead, utcnow
from app.services.logs import record_log

HEARTBEAT_KEY = "loom:ralph:heartbeat"


def reclaim_expired_leases(now: datetime | None = None) -> list[int]:
    """Reopen in-progress beads whose lease expired and free their agents. Returns the bead ids.

    The UPDATE re-checks the lease in its WHERE clause, so a worker that renewed its lease in the
    meantime keeps its bead; the fencing token (bumped by the next claim) stops a stale worker.
    """
    now = now or utcnow()
    candidates = db.session.execute(
        select(Bead.id, Bead.assigned_to, Bead.project_id)
        .where(Bead.status == "in_progress", Bead.lease_expires_at < now)
        .order_by(Bead.id).limit(500)
    ).all()
    reclaimed: list[int] = []
    for bead_id, agent_id, project_id in candidates:
        done = db.session.execute(
            update(Bead)
            .where(Bead.id == bead_id, Bead.status == "in_progress", Bead.lease_expires_at < now)
            .values(status="open", assigned_to=None, lease_expires_at=None, updated_at=now,
                    status_reason="lease expired: reclaimed by Ralph")
            .execution_options(synchronize_session=False)
        ).rowcount
        if not done:
            continue
        if agent_id is not None:
            db.session.execute(
                update(Agent).where(Agent.id == agent_id, Agent.current_bead_id == bead_id)
                .values(status="idle", current_bead_id=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        record_log("WARNING", "ralph", f"bead {bead_id} lease expired; reopened", project_id=project_id,
                   bead_id=bead_id, agent_id=agent_id, commit=False)
        reclaimed.append(bead_id)
    db.session.commit()
    return reclaimed


def run_tick(redis_client, now: datetime | None = None) -> dict:
    """One Ralph pass; the summary is also stored in Redis as the heartbeat the UI and probes read."""
    started = time.perf_counter()
    reclaimed = reclaim_expired_leases(now)
    summary = {"ts": (now or utcnow()).isoformat(), "reclaimed": reclaimed,
               "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
    redis_client.set(HEARTBEAT_KEY, json.dumps(summary), ex=300)
    return summary


def last_heartbeat(redis_client) -> dict | None:
    raw = redis_client.get(HEARTBEAT_KEY)
    return json.loads(raw) if raw else None
