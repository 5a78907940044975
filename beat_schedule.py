"""The Celery Beat schedule as plain data. Each entry expires within its interval, so a backlog never piles up;
each task also takes a per-tick Redis marker, so a second Beat process cannot make it run twice."""
from __future__ import annotations

RALPH_INTERVAL_S = 10.0
HEALTH_INTERVAL_S = 30.0
MOTIVATIONS_INTERVAL_S = 30.0
WEBHOOKS_INTERVAL_S = 15.0
CLEANUP_INTERVAL_S = 600.0


def build_schedule(ralph_s: float = RALPH_INTERVAL_S, health_s: float = HEALTH_INTERVAL_S,
                   motivations_s: float = MOTIVATIONS_INTERVAL_S, webhooks_s: float = WEBHOOKS_INTERVAL_S,
                   cleanup_s: float = CLEANUP_INTERVAL_S) -> dict[str, dict]:
    return {
        "ralph-tick": {"task": "loom.ralph_tick", "schedule": ralph_s, "options": {"expires": ralph_s}},
        "provider-health": {"task": "loom.provider_health", "schedule": health_s, "options": {"expires": health_s}},
        "motivations-tick": {"task": "loom.motivations_tick", "schedule": motivations_s,
                             "options": {"expires": motivations_s}},
        "webhook-retries": {"task": "loom.webhooks_tick", "schedule": webhooks_s, "options": {"expires": webhooks_s}},
        "workspace-cleanup": {"task": "loom.workspace_cleanup", "schedule": cleanup_s,
                              "options": {"expires": cleanup_s}},
    }


BEAT_SCHEDULE = build_schedule()
