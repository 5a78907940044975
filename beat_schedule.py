"""The Celery Beat schedule as plain data. Each entry expires within its interval, so a backlog never piles up."""
from __future__ import annotations

RALPH_INTERVAL_S = 10.0

BEAT_SCHEDULE: dict[str, dict] = {
    "ralph-tick": {
        "task": "loom.ralph_tick",
        "schedule": RALPH_INTERVAL_S,
        "options": {"expires": RALPH_INTERVAL_S},
    },
}
