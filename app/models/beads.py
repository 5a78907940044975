"""Beads (work items), their dependency edges, tags and comments."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow

BEAD_STATUSES = ("open", "in_progress", "blocked", "closed")
BEAD_TYPES = ("task", "bug", "feature", "epic", "decision")
PRIORITIES = (0, 1, 2, 3)  # P0 (critical) .. P3 (low)
ERROR_HISTORY_KEEP = 20


class Bead(db.Model):
    __tablename__ = "beads"
    __table_args__ = (
        CheckConstraint("priority BETWEEN 0 AND 3", name="priority_range"),
        CheckConstraint("status IN ('open','in_progress','blocked','closed')", name="status_valid"),
        Index("ix_beads_ready", "project_id", "status", "priority", "created_at"),
        Index("ix_beads_lease", "status", "lease_expires_at"),
        # Ralph's tick: beads dispatched too often; provider-blocked beads due for a retry (migration 0006).
        Index("ix_beads_dispatch_count", "status", "dispatch_count"),
        Index("ix_beads_block_kind", "status", "block_kind", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    type: Mapped[str] = mapped_column(String(20), default="task", nullable=False)
    priority: Mapped[int] = mapped_column(Integer, default=2, nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="open", nullable=False, index=True)
    acceptance: Mapped[str | None] = mapped_column(Text)  # a shell command that must pass before closing
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)  # a person
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fencing_token: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error_history: Mapped[list] = mapped_column(JSONType, default=list, nullable=False)
    status_reason: Mapped[str | None] = mapped_column(Text)  # why it is blocked / closed
    # What kind of block: user, escalation, loop, provider, auth, rate_limit, budget (Ralph recovers some).
    block_kind: Mapped[str | None] = mapped_column(String(20))
    meta: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)  # e.g. a decision's question
    # Set when an agent's action created the bead: makes a redelivered step's create_bead idempotent.
    origin_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tag_rows: Mapped[list[BeadTag]] = relationship(
        cascade="all, delete-orphan", order_by="BeadTag.tag", lazy="selectin"
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]

    def to_dict(self, blocked_by: list[int] | None = None, blocks: list[int] | None = None) -> dict:
        out = {
            "id": self.id,
            "project_id": self.project_id,
            "title": self.title,
            "description": self.description,
            "type": self.type,
            "priority": self.priority,
            "status": self.status,
            "tags": self.tags,
            "acceptance": self.acceptance,
            "assigned_to": self.assigned_to,
            "owner_id": self.owner_id,
            "lease_expires_at": iso(self.lease_expires_at),
            "fencing_token": self.fencing_token,
            "dispatch_count": self.dispatch_count,
            "error_history": self.error_history or [],
            "status_reason": self.status_reason,
            "block_kind": self.block_kind,
            "meta": self.meta or {},
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "closed_at": iso(self.closed_at),
        }
        if blocked_by is not None:
            out["blocked_by"] = blocked_by
        if blocks is not None:
            out["blocks"] = blocks
        return out


class BeadTag(db.Model):
    __tablename__ = "bead_tags"

    bead_id: Mapped[int] = mapped_column(ForeignKey("beads.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)


class BeadDependency(db.Model):
    """`bead_id` is blocked by `blocker_id` (equivalently: blocker blocks bead)."""

    __tablename__ = "bead_dependencies"
    __table_args__ = (CheckConstraint("bead_id <> blocker_id", name="not_self"),)

    bead_id: Mapped[int] = mapped_column(ForeignKey("beads.id", ondelete="CASCADE"), primary_key=True)
    blocker_id: Mapped[int] = mapped_column(
        ForeignKey("beads.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Comment(db.Model):
    __tablename__ = "bead_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bead_id: Mapped[int] = mapped_column(ForeignKey("beads.id", ondelete="CASCADE"), index=True, nullable=False)
    author: Mapped[str] = mapped_column(String(100), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    origin_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "bead_id": self.bead_id, "author": self.author, "text": self.text,
                "created_at": iso(self.created_at)}
