"""Personas (an agent's instructions) and agents (an actor with a persona, a role and a status)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow

AGENT_STATUSES = ("idle", "working", "paused", "complete")


class Persona(db.Model):
    __tablename__ = "personas"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # slug, e.g. "qa-engineer"
    title: Mapped[str] = mapped_column(String(100), nullable=False)
    role: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    instructions: Mapped[str] = mapped_column(Text, default="", nullable=False)  # Markdown body
    meta: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)  # front matter extras
    builtin: Mapped[bool] = mapped_column(default=False, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self, full: bool = True) -> dict:
        out = {
            "name": self.name,
            "title": self.title,
            "role": self.role,
            "description": self.description,
            "hints": (self.meta or {}).get("hints", []),
            "builtin": self.builtin,
            "updated_at": iso(self.updated_at),
        }
        if full:
            out["instructions"] = self.instructions
            out["meta"] = self.meta or {}
        return out


class Agent(db.Model):
    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_agents_project_name"),
        CheckConstraint("status IN ('idle','working','paused','complete')", name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    persona: Mapped[str] = mapped_column(ForeignKey("personas.name", onupdate="CASCADE"), nullable=False)
    role: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="idle", nullable=False, index=True)
    # The bead this agent holds; no FK so the agents<->beads tables do not depend on each other.
    current_bead_id: Mapped[int | None] = mapped_column(Integer)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "persona": self.persona,
            "role": self.role,
            "project_id": self.project_id,
            "status": self.status,
            "current_bead_id": self.current_bead_id,
            "last_heartbeat_at": iso(self.last_heartbeat_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
