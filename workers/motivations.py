"""Event motivations fire promptly: the event hook hands each matching event to a worker task."""
from __future__ import annotations

import logging

import redis
from celery import shared_task
from flask import current_app
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Motivation
from app.services import motivation_triggers, table_cache
from app.services.motivations import EVENT_TYPES
from workers.dispatch import request_dispatch
from workers.loop import send

log = logging.getLogger("loom.motivations")
EVENTS_HANDLED = "loom:motivations:events"  # events the task has evaluated (for operators and tests)


def _wanted_types() -> frozenset[str]:
    """Event types some enabled motivation reacts to. Asked in the caller's session without flushing it (it may
    hold pending changes) and without a second pooled connection (a full pool must not deadlock)."""
    query = select(Motivation.event).where(Motivation.enabled.is_(True), Motivation.kind == "event").distinct()
    with db.session.no_autoflush:
        return frozenset(db.session.scalars(query).all())


def _wanted(event_type: str) -> bool:
    """Every event asks, so the answer is read at most once a second per process (see table_cache): a
    motivation made in another process hears events from then on; a bead.closed missed meanwhile is caught up
    by the Beat tick."""
    return event_type in table_cache.cached(Motivation.__tablename__, "event types", _wanted_types)


def on_event(event: dict) -> None:
    """Event hook: a bead event some enabled motivation listens to goes to `loom.motivation_event`."""
    if event.get("type") not in EVENT_TYPES or event.get("bead_id") is None or not _wanted(event["type"]):
        return
    try:
        send("loom.motivation_event", (event,))
    except (redis.RedisError, BrokerUnavailable, OSError) as exc:  # bead.closed is caught up by the Beat tick
        log.warning("motivation event %s not sent: %s", event.get("type"), exc)


@shared_task(name="loom.motivation_event", ignore_result=True, autoretry_for=(OperationalError,),
             retry_backoff=2, max_retries=5)
def motivation_event(event: dict) -> list[int]:
    """Fire the motivations for one event (idempotent: a redelivered message finds its firings taken)."""
    firings = motivation_triggers.fire_for_event(event, wake=request_dispatch)
    current_app.extensions["loom.redis"]().incr(EVENTS_HANDLED)
    return [f.id for f in firings]
