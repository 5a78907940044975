"""Publishing domain events after a commit. A Redis outage never fails the change that caused it."""
from __future__ import annotations

import logging
from typing import Any

import redis
from flask import current_app

log = logging.getLogger("loom.events")


def emit(type: str, *, project_id: int | None = None, bead_id: int | None = None, agent_id: int | None = None,
         data: dict[str, Any] | None = None) -> dict | None:
    """Publish one event on the bus, then run the app's event hooks (wake the dispatcher, feed the activity
    list, notify people, fire motivations). Each hook gets the event dict (`id` is None when Redis was down)."""
    event = None
    try:
        event = current_app.extensions["loom.bus"]().publish(type, project_id=project_id, bead_id=bead_id,
                                                             agent_id=agent_id, data=data)
    except redis.RedisError as exc:
        log.warning("event %s not published (Redis unavailable: %s)", type, exc)
    hooked = event or {"id": None, "type": type, "project_id": project_id, "bead_id": bead_id,
                       "agent_id": agent_id, "data": data or {}}
    for hook in current_app.extensions.get("loom.event_hooks", []):
        try:
            hook(hooked)
        except Exception:  # noqa: BLE001 (a hook failing must not undo a committed change)
            log.exception("event hook %r failed for %s", hook, type)
    return event
