"""Notification webhooks: a JSON POST signed with the user's secret (`X-Loom-Signature: sha256=<hex HMAC-SHA256 of
the raw body>`), retried with growing backoff until a 2xx answer or the last attempt.

Each attempt first takes the delivery with a conditional UPDATE (a short lease on `next_attempt_at`), so a task
delivered twice, or a Beat retry racing the first send, never POSTs the same attempt twice.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import or_, select, update

from app.extensions import db
from app.models import Notification, User, WebhookDelivery, iso, utcnow
from app.services import webhook_targets
from app.services.notification_prefs import preference_of, webhook_secret

log = logging.getLogger("loom.webhooks")
LEASE = timedelta(seconds=120)  # an attempt in flight; a crashed one is retried after this
MAX_BACKOFF_S = 6 * 3600
USER_AGENT = "Loom-Webhook/1"
GIVE_UP_STATUSES = frozenset(range(400, 500)) - {408, 425, 429}  # the receiver refused it: retrying won't help


@dataclass(frozen=True)
class WebhookSettings:
    timeout_s: float = 10.0
    max_attempts: int = 6
    backoff_s: float = 30.0
    allow_private: bool = False  # LOOM_WEBHOOK_ALLOW_PRIVATE: receivers on the installation's own network


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """What a receiver does (documented in the README; used by the tests' receiver)."""
    return hmac.compare_digest(sign(body, secret), signature or "")


def backoff(attempts: int, settings: WebhookSettings) -> timedelta:
    """Wait after the n-th failed attempt: backoff, then 4x longer each time, at most six hours."""
    return timedelta(seconds=min(MAX_BACKOFF_S, settings.backoff_s * 4 ** max(0, attempts - 1)))


def _take(delivery_id: int) -> bool:
    now = utcnow()
    taken = db.session.execute(update(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
        or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now))
        .values(next_attempt_at=now + LEASE)).rowcount
    db.session.commit()
    return bool(taken)


def payload(delivery: WebhookDelivery, notification: Notification, username: str) -> bytes:
    return json.dumps({"delivery_id": delivery.id, "attempt": delivery.attempts + 1, "event": notification.type,
                       "user": username, "sent_at": iso(utcnow()), "notification": notification.to_dict()},
                      separators=(",", ":"), sort_keys=True).encode()


def _record(delivery: WebhookDelivery, settings: WebhookSettings, status: int | None, error: str | None) -> None:
    delivery.attempts += 1
    delivery.last_status = status
    delivery.last_error = error[:1000] if error else None
    if status is not None and 200 <= status < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", utcnow(), None
    elif delivery.attempts >= settings.max_attempts or status in GIVE_UP_STATUSES:
        delivery.status, delivery.next_attempt_at = "failed", None
    else:
        delivery.next_attempt_at = utcnow() + backoff(delivery.attempts, settings)
    db.session.commit()


def deliver(delivery_id: int, http: httpx.Client, settings: WebhookSettings) -> WebhookDelivery | None:
    """Make one attempt at a due delivery; None when it is not due, taken by someone else, or gone."""
    if not _take(delivery_id):
        return None
    delivery = db.session.get(WebhookDelivery, delivery_id)
    notification = db.session.get(Notification, delivery.notification_id) if delivery else None
    if delivery is None or notification is None:
        return None
    pref, user = preference_of(notification.user_id), db.session.get(User, notification.user_id)
    secret = webhook_secret(pref) if pref is not None else None
    if user is None or not secret:
        _record(delivery, WebhookSettings(max_attempts=0), None, "the user has no webhook secret any more")
        return delivery
    try:  # checked at each attempt, and sent to the address checked: a name may resolve elsewhere each time
        target = webhook_targets.Target(delivery.url) if settings.allow_private else webhook_targets.pinned(
            delivery.url)
    except webhook_targets.Refused as exc:
        _record(delivery, WebhookSettings(max_attempts=0), None, f"not sent: {exc}")
        log.warning("webhook delivery %s not sent: %s", delivery.id, exc)
        return delivery
    except OSError as exc:  # the name did not resolve: a failed attempt like a refused connection
        _record(delivery, settings, None, f"not sent: {exc}")
        return delivery
    body = payload(delivery, notification, user.username)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Loom-Event": notification.type,
               "X-Loom-Delivery": str(delivery.id), "X-Loom-Signature": sign(body, secret)}
    try:
        answer = http.post(target.url, content=body, headers={**headers, **target.headers}, timeout=settings.timeout_s,
                           extensions=target.extensions)
        status, error = answer.status_code, None if answer.is_success else f"HTTP {answer.status_code}"
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"
    _record(delivery, settings, status, error)
    log.info("webhook delivery %s attempt %s: %s", delivery.id, delivery.attempts, error or status)
    return delivery


def due_deliveries(limit: int = 100) -> list[int]:
    return list(db.session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)))
