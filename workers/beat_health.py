"""`python -m workers.beat_health`: exit 0 while Ralph ticks (its heartbeat in Redis is fresh), else print why
and exit 1. The beat container's health check: a dead or wedged Beat shows as unhealthy, though the web's
readiness does not depend on it (Beat may run elsewhere)."""
from __future__ import annotations

import sys
from datetime import datetime

import redis

from app.config import load_config
from app.models import utcnow
from app.services.ralph import last_heartbeat


def problem(redis_url: str, interval_s: float) -> str | None:
    """Why Ralph is not ticking (None: it is)."""
    try:
        beat = last_heartbeat(redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3))
    except redis.RedisError as exc:
        return f"cannot read Ralph's heartbeat: {exc}"
    if beat is None:
        return "no Ralph tick in the last 5 minutes"
    age = (utcnow() - datetime.fromisoformat(beat["ts"])).total_seconds()
    limit = 3 * interval_s + 5
    return None if age < limit else f"Ralph's last tick was {age:.0f} s ago (more than {limit:.0f} s)"


def main() -> int:
    cfg = load_config()
    if not cfg.get("REDIS_URL"):
        print("LOOM_REDIS_URL is not set", file=sys.stderr)
        return 1
    why = problem(cfg["REDIS_URL"], float(cfg["RALPH_INTERVAL"]))
    if why:
        print(why, file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
