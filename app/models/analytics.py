"""Analytics: one row per LLM request (what it cost, how long it took) and the price table."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, iso, utcnow

LLM_REQUEST_SOURCES = ("loop", "pair", "health")


class LLMRequest(db.Model):
    """An LLM call as it happened: `status` is "ok" or the error kind (auth, rate_limit, provider, ..., budget)."""

    __tablename__ = "llm_requests"
    __table_args__ = (Index("ix_llm_requests_project_ts", "project_id", "ts"),
                      Index("ix_llm_requests_model_ts", "model", "ts"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    project_id: Mapped[int | None] = mapped_column(Integer)
    bead_id: Mapped[int | None] = mapped_column(Integer, index=True)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(Integer)
    seq: Mapped[int | None] = mapped_column(Integer)  # the step's turn number within the run
    persona: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    provider: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20), default="loop", nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="ok", nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)  # usage guessed, not reported
    priced: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)  # False: no price matched the model

    def to_dict(self) -> dict:
        return {"id": self.id, "ts": iso(self.ts), "project_id": self.project_id, "bead_id": self.bead_id,
                "agent_id": self.agent_id, "run_id": self.run_id, "seq": self.seq, "persona": self.persona,
                "model": self.model, "provider": self.provider, "source": self.source, "status": self.status,
                "error": self.error, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "latency_ms": self.latency_ms,
                "cost_usd": self.cost_usd, "estimated": self.estimated, "priced": self.priced}


class ModelPrice(db.Model):
    """USD per million tokens for a model name; `pattern` may end in `*` (e.g. `gpt-4o*`)."""

    __tablename__ = "model_prices"

    pattern: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt_usd_per_mtok: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    completion_usd_per_mtok: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "prompt_usd_per_mtok": self.prompt_usd_per_mtok,
                "completion_usd_per_mtok": self.completion_usd_per_mtok, "updated_by": self.updated_by,
                "updated_at": iso(self.updated_at)}
