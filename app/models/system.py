"""System tables: runtime configuration overrides and structured log entries."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow


class ConfigKV(db.Model):
    __tablename__ = "config_kv"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[object] = mapped_column(JSONType, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {"key": self.key, "value": self.value, "updated_by": self.updated_by,
                "updated_at": iso(self.updated_at)}


class LogEntry(db.Model):
    __tablename__ = "log_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    level: Mapped[str] = mapped_column(String(10), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[int | None] = mapped_column(Integer, index=True)
    bead_id: Mapped[int | None] = mapped_column(Integer, index=True)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "ts": iso(self.ts), "level": self.level, "source": self.source,
                "message": self.message, "project_id": self.project_id, "bead_id": self.bead_id,
                "agent_id": self.agent_id, "data": self.data or {}}
