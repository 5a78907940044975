"""What the dashboard shows at a glance: bead counts by status and project, providers' health, Ralph."""
from __future__ import annotations

import json

import redis
from sqlalchemy import func, select

from app.extensions import db
from app.models import BEAD_STATUSES, Bead, Provider
from app.services import provider_health, ralph


def bead_counts(project_id: int | None = None) -> dict[str, int]:
    """{status: count} for every status (zeros included), in one grouped query."""
    query = select(Bead.status, func.count()).group_by(Bead.status)
    if project_id is not None:
        query = query.where(Bead.project_id == project_id)
    counts = dict.fromkeys(BEAD_STATUSES, 0)
    counts.update({status: int(n) for status, n in db.session.execute(query).all()})
    return counts


def bead_counts_by_project() -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for project_id, status, n in db.session.execute(
            select(Bead.project_id, Bead.status, func.count()).group_by(Bead.project_id, Bead.status)).all():
        out.setdefault(project_id, dict.fromkeys(BEAD_STATUSES, 0))[status] = int(n)
    return out


def providers_health(config: dict, redis_client: redis.Redis) -> list[dict]:
    """Registered providers plus the LOOM_PROVIDER_URL one (its last check lives in Redis)."""
    items = [p.to_dict() for p in db.session.scalars(select(Provider).order_by(Provider.id)).all()]
    if config.get("PROVIDER_URL"):
        try:
            raw = redis_client.get(provider_health.ENV_KEY)
        except redis.RedisError:
            raw = None
        last = json.loads(raw) if raw else {}
        items.append({"id": None, "name": "LOOM_PROVIDER_URL", "endpoint": config["PROVIDER_URL"],
                      "model": last.get("model") or config.get("MODEL") or None,
                      "status": last.get("status", "unknown"), "latency_ms": last.get("latency_ms"),
                      "last_error": last.get("error"), "last_checked_at": last.get("ts")})
    return items


def ralph_heartbeat(redis_client: redis.Redis) -> dict | None:
    try:
        return ralph.last_heartbeat(redis_client)
    except redis.RedisError:
        return None
