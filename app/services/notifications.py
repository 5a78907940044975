"""Per-user notifications: made from events by the rules, filtered by each user's preferences, kept as an
inbox (unread count, mark read, all read), announced live to their user only, and queued for the user's
signed webhook when they have one (held back until their quiet hours end)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Notification, NotificationPreference, WebhookDelivery, utcnow
from app.services.errors import NotFound
from app.services.events import emit
from app.services.notification_prefs import allows, preference_of, quiet_until
from app.services.notification_rules import Draft, drafts_for
from app.services import paging


def unread_count(user_id: int) -> int:
    return int(db.session.scalar(select(func.count(Notification.id)).where(
        Notification.user_id == user_id, Notification.read_at.is_(None))) or 0)


def _announce(kind: str, user_id: int, **data: object) -> None:
    """notification.* events are private: the bus hands them only to the user named in data.user_id."""
    emit(kind, data={"user_id": user_id, "unread": unread_count(user_id), **data})


def _queue_webhook(notification: Notification, pref: NotificationPreference | None, now: datetime) -> None:
    if pref is None or not pref.webhook_enabled or not pref.webhook_url:
        return
    db.session.add(WebhookDelivery(notification_id=notification.id, url=pref.webhook_url, status="pending",
                                   next_attempt_at=quiet_until(pref, now) or now, created_at=now))


def _create(draft: Draft, dedup_key: str, now: datetime) -> Notification | None:
    """Insert one notification unless its cause was already notified (a redelivered event)."""
    if db.session.scalar(select(Notification.id).where(Notification.dedup_key == dedup_key)) is not None:
        return None
    pref = preference_of(draft.user_id)
    if not allows(pref, draft.type, draft.priority):
        return None
    notification = Notification(user_id=draft.user_id, type=draft.type, title=draft.title, body=draft.body,
                                link=draft.link, priority=draft.priority, project_id=draft.project_id,
                                bead_id=draft.bead_id, dedup_key=dedup_key, created_at=now)
    db.session.add(notification)
    try:
        db.session.flush()
    except IntegrityError:  # the same cause, notified by a concurrent delivery of the event
        db.session.rollback()
        return None
    _queue_webhook(notification, pref, now)
    db.session.commit()
    return notification


def notify_for_event(event: dict, now: datetime | None = None) -> list[Notification]:
    """Make the event's notifications (idempotent per event and user) and announce each to its user."""
    now = now or utcnow()
    cause = event.get("id") or f"{event.get('type')}:{event.get('bead_id')}"
    made = []
    for draft in drafts_for(event):
        notification = _create(draft, f"{draft.type}:{cause}:{draft.user_id}"[:120], now)
        if notification is not None:
            made.append(notification)
    for notification in made:
        _announce("notification.created", notification.user_id, notification=notification.to_dict(),
                  title=notification.title, id=notification.id)
    return made


def pending_deliveries(notification_ids: list[int]) -> list[int]:
    """The webhook deliveries these notifications queued that are due now (the rest wait for the Beat tick)."""
    if not notification_ids:
        return []
    return list(db.session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.notification_id.in_(notification_ids), WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= utcnow())))


def list_notifications(user_id: int, *, unread: bool | None = None, type: str | None = None, limit: int = 50,
                       offset: int = 0) -> tuple[list[Notification], int]:
    query = select(Notification).where(Notification.user_id == user_id)
    if unread is True:
        query = query.where(Notification.read_at.is_(None))
    elif unread is False:
        query = query.where(Notification.read_at.is_not(None))
    if type is not None:
        query = query.where(Notification.type == type)
    return paging.page(query, Notification.id.desc(), limit=limit, offset=offset)


def mark_read(user_id: int, notification_id: int) -> Notification:
    """Mark one of the user's notifications read (idempotent); another user's is not found, not forbidden."""
    notification = db.session.get(Notification, notification_id)
    if notification is None or notification.user_id != user_id:
        raise NotFound(f"notification {notification_id} not found", "id")
    if notification.read_at is None:
        notification.read_at = utcnow()
        db.session.commit()
        _announce("notification.read", user_id, ids=[notification.id])
    return notification


def mark_all_read(user_id: int) -> int:
    """Mark every unread notification of the user read; returns how many changed."""
    changed = db.session.execute(update(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)).values(read_at=utcnow())).rowcount
    db.session.commit()
    if changed:
        _announce("notification.read", user_id, all=True)
    return int(changed or 0)


def list_deliveries(user_id: int, *, limit: int = 50, offset: int = 0) -> tuple[list[WebhookDelivery], int]:
    query = select(WebhookDelivery).join(Notification, Notification.id == WebhookDelivery.notification_id) \
        .where(Notification.user_id == user_id)
    return paging.page(query, WebhookDelivery.id.desc(), limit=limit, offset=offset)
