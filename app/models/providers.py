"""LLM providers: OpenAI-compatible endpoints (TokenHub, OpenAI, vLLM, Ollama, LiteLLM...)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, iso, utcnow

PROVIDER_STATUSES = ("unknown", "healthy", "degraded", "down")


def mask_secret(secret: str | None) -> str | None:
    """Show only that a key is set and its last 4 characters."""
    if not secret:
        return None
    return "****" + secret[-4:] if len(secret) > 8 else "****"


def secret_hint(secret: str | None) -> str | None:
    """What may be stored in clear next to an encrypted key: its masked form."""
    return mask_secret(secret)


class Provider(db.Model):
    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    endpoint: Mapped[str] = mapped_column(String(1000), nullable=False)
    model: Mapped[str | None] = mapped_column(String(200))
    api_key: Mapped[str | None] = mapped_column(Text)  # encrypted (app/services/secrets.py), never returned
    api_key_hint: Mapped[str | None] = mapped_column(String(8))  # "****abcd"
    status: Mapped[str] = mapped_column(String(20), default="unknown", nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "model": self.model,
            "api_key": self.api_key_hint if self.api_key else None,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "last_error": self.last_error,
            "last_checked_at": iso(self.last_checked_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
