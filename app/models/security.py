"""API keys (only a hash and an 8-character prefix are stored) and the security event log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(8), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # HMAC-SHA256 of the whole key
    permissions: Mapped[list | None] = mapped_column(JSONType)  # None: all of the user's permissions
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self, username: str | None = None) -> dict:
        return {"id": self.id, "user_id": self.user_id, "user": username, "name": self.name, "prefix": self.prefix,
                "permissions": self.permissions, "expires_at": iso(self.expires_at),
                "created_at": iso(self.created_at), "last_used_at": iso(self.last_used_at),
                "revoked_at": iso(self.revoked_at)}


class SecurityEvent(db.Model):
    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    type: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    username: Mapped[str | None] = mapped_column(String(64), index=True)  # whom it concerns
    actor: Mapped[str | None] = mapped_column(String(64))  # who did it
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "ts": iso(self.ts), "type": self.type, "username": self.username,
                "actor": self.actor, "ip": self.ip, "details": self.details or {}}
