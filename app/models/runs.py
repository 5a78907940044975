"""Runs (one agent working one bead) and Steps (one LLM turn each): the loop's ledger in the database."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import JSONType, UTCDateTime, iso, utcnow

RUN_STATUSES = ("running", "finished", "failed", "stopped", "abandoned")


class Run(db.Model):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status", "status", "updated_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bead_id: Mapped[int] = mapped_column(ForeignKey("beads.id", ondelete="CASCADE"), index=True, nullable=False)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    project_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    fencing_token: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="running", nullable=False)
    terminal_reason: Mapped[str | None] = mapped_column(Text)
    iterations: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # steps fully applied
    system_prompt: Mapped[str] = mapped_column(Text, default="", nullable=False)
    task_prompt: Mapped[str] = mapped_column(Text, default="", nullable=False)
    counters: Mapped[dict] = mapped_column(JSONType, default=dict, nullable=False)  # loop-limit bookkeeping
    resumes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # times Ralph restarted it
    # Set while a person pairs with the agent on this run: the autonomous loop waits until it is handed back.
    paused_by: Mapped[str | None] = mapped_column(String(64))
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        return {"id": self.id, "bead_id": self.bead_id, "agent_id": self.agent_id, "project_id": self.project_id,
                "fencing_token": self.fencing_token, "status": self.status,
                "terminal_reason": self.terminal_reason, "iterations": self.iterations, "resumes": self.resumes,
                "paused_by": self.paused_by, "paused_at": iso(self.paused_at),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at)}


class Step(db.Model):
    """One LLM turn. Written twice: `llm_done` once the reply is in, `applied` once its actions ran."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_steps_run_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
    bead_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="llm_done", nullable=False)
    kind: Mapped[str] = mapped_column(String(10), default="loop", nullable=False)  # "loop" or "pair" (a human turn)
    author: Mapped[str | None] = mapped_column(String(64))  # kind=pair: the person who wrote `request`
    request: Mapped[str] = mapped_column(Text, default="", nullable=False)  # the user message sent this turn
    response: Mapped[str] = mapped_column(Text, default="", nullable=False)
    notes: Mapped[str | None] = mapped_column(Text)
    actions: Mapped[list] = mapped_column(JSONType, default=list, nullable=False)
    results: Mapped[list] = mapped_column(JSONType, default=list, nullable=False)
    parse_error: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who is applying this reply, since when, and how many tries it took (a poison step is parked).
    attempts: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        return {"id": self.id, "run_id": self.run_id, "bead_id": self.bead_id, "seq": self.seq,
                "kind": self.kind, "author": self.author, "attempts": self.attempts,
                "status": self.status, "request": self.request, "response": self.response, "notes": self.notes,
                "actions": self.actions or [], "results": self.results or [], "parse_error": self.parse_error,
                "model": self.model, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "latency_ms": self.latency_ms,
                "created_at": iso(self.created_at), "applied_at": iso(self.applied_at)}
