"""The team's activity feed (events worth reading, repeats aggregated) and per-user notifications."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow


class Activity(db.Model):
    """One line of the feed; `count` > 1 when the same actor repeated the same thing within minutes."""

    __tablename__ = "activity"
    __table_args__ = (Index("ix_activity_aggregate", "actor", "type", "project_id", "last_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(100), default="system", nullable=False)
    project_id: Mapped[int | None] = mapped_column(Integer, index=True)
    bead_id: Mapped[int | None] = mapped_column(Integer)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text, default="", nullable=False)
    data: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)
    count: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(40), unique=True)  # the bus event it came from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "actor": self.actor, "project_id": self.project_id,
                "bead_id": self.bead_id, "agent_id": self.agent_id, "summary": self.summary,
                "data": self.data or {}, "count": self.count, "created_at": iso(self.created_at),
                "last_at": iso(self.last_at)}


class Notification(db.Model):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_unread", "user_id", "read_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(String(40), nullable=False)  # bead.assigned, decision.waiting, ...
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, default="", nullable=False)
    link: Mapped[str | None] = mapped_column(String(300))  # a page path, e.g. /beads/12
    priority: Mapped[int | None] = mapped_column(Integer)
    project_id: Mapped[int | None] = mapped_column(Integer)
    bead_id: Mapped[int | None] = mapped_column(Integer)
    dedup_key: Mapped[str | None] = mapped_column(String(120), unique=True)  # one notification per cause
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        return {"id": self.id, "user_id": self.user_id, "type": self.type, "title": self.title, "body": self.body,
                "link": self.link, "priority": self.priority, "project_id": self.project_id,
                "bead_id": self.bead_id, "created_at": iso(self.created_at), "read_at": iso(self.read_at),
                "read": self.read_at is not None}


class NotificationPreference(db.Model):
    """What a user wants to hear about, when, and where (in-app always; a signed webhook optionally)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    types: Mapped[list | None] = mapped_column(JSONType)  # None: every type
    min_priority: Mapped[int] = mapped_column(Integer, default=3, nullable=False)  # notify for P0..P<n>
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "22:00" (UTC)
    quiet_end: Mapped[str | None] = mapped_column(String(5))  # "07:00"
    webhook_url: Mapped[str | None] = mapped_column(String(1000))
    webhook_secret: Mapped[str | None] = mapped_column(Text)  # encrypted at rest (app/services/secrets.py)
    webhook_enabled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)


class WebhookDelivery(db.Model):
    """One notification's trip to a user's webhook: retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"),
                                                 index=True, nullable=False)
    url: Mapped[str] = mapped_column(String(1000), nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="pending", nullable=False)  # pending/delivered/failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        return {"id": self.id, "notification_id": self.notification_id, "url": self.url, "status": self.status,
                "attempts": self.attempts, "next_attempt_at": iso(self.next_attempt_at),
                "last_status": self.last_status, "last_error": self.last_error,
                "created_at": iso(self.created_at), "delivered_at": iso(self.delivered_at)}
