"""Budgets: token and cost limits per project or per bead, with spend and in-flight reservations."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, iso, utcnow


class Budget(db.Model):
    """Limits (None: unlimited) and running totals. `scope` is "project:<id>" or "bead:<id>" (unique)."""

    __tablename__ = "budgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True, nullable=False)
    bead_id: Mapped[int | None] = mapped_column(ForeignKey("beads.id", ondelete="CASCADE"), index=True)
    daily_usd: Mapped[float | None] = mapped_column(Float)
    total_usd: Mapped[float | None] = mapped_column(Float)
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    total_tokens: Mapped[int | None] = mapped_column(BigInteger)
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    day: Mapped[str] = mapped_column(String(10), default="", nullable=False)  # UTC date the day_* values are for
    day_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    day_tokens: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    reserved_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    exhausted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "scope": self.scope, "project_id": self.project_id, "bead_id": self.bead_id,
                "daily_usd": self.daily_usd, "total_usd": self.total_usd, "daily_tokens": self.daily_tokens,
                "total_tokens": self.total_tokens, "spent_usd": self.spent_usd, "spent_tokens": self.spent_tokens,
                "day": self.day or None, "day_usd": self.day_usd, "day_tokens": self.day_tokens,
                "reserved_usd": self.reserved_usd, "reserved_tokens": self.reserved_tokens,
                "exhausted_at": iso(self.exhausted_at), "updated_by": self.updated_by,
                "updated_at": iso(self.updated_at)}


class BudgetReservation(db.Model):
    """An in-flight LLM call's hold on a budget; settled (deleted) with the real usage. `key` makes it idempotent."""

    __tablename__ = "budget_reservations"
    __table_args__ = (UniqueConstraint("budget_id", "key", name="uq_budget_reservations_budget_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(100), nullable=False)  # e.g. "run12.step3"
    tokens: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
