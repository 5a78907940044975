"""Motivations (triggers that make agents proactive) and their firings (exactly one row per firing)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow

MOTIVATION_KINDS = ("interval", "calendar", "event", "idle", "threshold")


class Motivation(db.Model):
    __tablename__ = "motivations"
    __table_args__ = (CheckConstraint("kind IN ('interval','calendar','event','idle','threshold')",
                                      name="kind_valid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    event: Mapped[str | None] = mapped_column(String(60))  # kind=event: e.g. "bead.closed", "test.failed"
    interval_s: Mapped[int | None] = mapped_column(Integer)  # kind=interval
    cron: Mapped[str | None] = mapped_column(String(100))  # kind=calendar: 5-field cron, UTC
    idle_minutes: Mapped[int | None] = mapped_column(Integer)  # kind=idle
    threshold: Mapped[dict | None] = mapped_column(JSONType)  # kind=threshold: {"metric", "op"?, "value"}
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    persona: Mapped[str | None] = mapped_column(String(64))  # who the created bead is for / which agent wakes
    bead_template: Mapped[dict | None] = mapped_column(JSONType)  # {"title", "description"?, "priority"?, ...}
    wake_agent: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)  # one of the default set
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last switched on: catch-up starts here
    scan_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime)  # kind=event: closed beads scanned up to
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fire_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "event": self.event,
                "interval_s": self.interval_s, "cron": self.cron, "idle_minutes": self.idle_minutes,
                "threshold": self.threshold, "cooldown_s": self.cooldown_s, "project_id": self.project_id,
                "persona": self.persona, "bead_template": self.bead_template, "wake_agent": self.wake_agent,
                "enabled": self.enabled, "builtin": self.builtin, "description": self.description,
                "enabled_at": iso(self.enabled_at), "last_fired_at": iso(self.last_fired_at),
                "fire_count": self.fire_count,
                "created_by": self.created_by, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


class MotivationFiring(db.Model):
    """`dedup_key` (unique) names the occasion — e.g. "m3:i:29112:p1" or "m5:e:41" — so it fires once."""

    __tablename__ = "motivation_firings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    motivation_id: Mapped[int] = mapped_column(ForeignKey("motivations.id", ondelete="CASCADE"), index=True,
                                               nullable=False)
    dedup_key: Mapped[str] = mapped_column(String(120), unique=True, nullable=False)
    project_id: Mapped[int | None] = mapped_column(Integer)
    trigger: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)  # what caused it
    bead_id: Mapped[int | None] = mapped_column(Integer)  # the bead it created
    agent_id: Mapped[int | None] = mapped_column(Integer)  # the agent it woke
    # pending (claimed, effects not yet done: Beat repairs it), fired, skipped (cooling down), failed
    outcome: Mapped[str] = mapped_column(String(20), default="pending", nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "motivation_id": self.motivation_id, "dedup_key": self.dedup_key,
                "project_id": self.project_id, "trigger": self.trigger or {}, "bead_id": self.bead_id,
                "agent_id": self.agent_id, "outcome": self.outcome, "detail": self.detail,
                "fired_at": iso(self.fired_at)}
