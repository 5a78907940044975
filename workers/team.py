"""The team's side of events: the event hook hands feed-worthy and notifying events to `loom.team_event`, which
writes the activity feed and the notifications and sends their webhooks; Beat retries webhooks that are due."""
from __future__ import annotations

import logging

import httpx
import redis
from celery import shared_task
from flask import current_app
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy.exc import OperationalError

from app.redis_locks import best_effort_lock
from app.services import activity, notifications, webhooks
from workers.loop import send
from workers.maintenance import first_this_tick

log = logging.getLogger("loom.team")
WEBHOOKS_TICK = "loom:tick:webhooks"
NOTIFYING = frozenset({"bead.created", "bead.updated", "bead.blocked", "budget.exhausted", "provider.health"})


def on_event(event: dict) -> None:
    """Event hook: an event the feed keeps or that may notify someone goes to a worker (never the caller's
    transaction: a web request or a loop step only pays for one broker message, and only for these types)."""
    if event.get("id") is None or not (activity.wanted(event) or event.get("type") in NOTIFYING):
        return
    try:
        send("loom.team_event", (event,))
    except (redis.RedisError, BrokerUnavailable, OSError) as exc:
        log.warning("team event %s not sent: %s", event.get("type"), exc)


def _feed_lock(name: str):
    """One feed line at a time per actor, type and project, across worker processes (Redis down: unlocked)."""
    return best_effort_lock(f"loom:lock:activity:{name}", ttl_s=30, wait_s=10)


def webhook_settings() -> webhooks.WebhookSettings:
    cfg = current_app.config
    return webhooks.WebhookSettings(timeout_s=cfg["WEBHOOK_TIMEOUT"], max_attempts=cfg["WEBHOOK_MAX_ATTEMPTS"],
                                    backoff_s=cfg["WEBHOOK_BACKOFF"], allow_private=cfg["WEBHOOK_ALLOW_PRIVATE"])


@shared_task(name="loom.team_event", ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=2,
             max_retries=5)
def team_event(event: dict) -> list[int]:
    """Feed line, notifications, then their webhooks (idempotent: a redelivered event changes nothing)."""
    activity.record_event(event, lock=_feed_lock)
    made = notifications.notify_for_event(event)
    for delivery_id in notifications.pending_deliveries([n.id for n in made]):
        send("loom.deliver_webhook", (delivery_id,))
    return [n.id for n in made]


@shared_task(name="loom.deliver_webhook", ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=2,
             max_retries=5)
def deliver_webhook(delivery_id: int) -> str | None:
    with httpx.Client(follow_redirects=False) as http:
        delivery = webhooks.deliver(delivery_id, http, webhook_settings())
    return delivery.status if delivery is not None else None


@shared_task(name="loom.webhooks_tick", ignore_result=True)
def webhooks_tick(force: bool = False) -> list[int] | None:
    """Send every due retry (and any first attempt whose message was lost) to `loom.deliver_webhook`."""
    client = current_app.extensions["loom.redis"]()
    if not force and not first_this_tick(client, WEBHOOKS_TICK, current_app.config["WEBHOOKS_INTERVAL"]):
        return None
    due = webhooks.due_deliveries()
    for delivery_id in due:
        send("loom.deliver_webhook", (delivery_id,))
    return due
