"""Answers about the work: projects, beads and comments, runs and steps, events."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.web.api.responses.base import Absent, Id, Json, Response
from app.web.api.schemas import BeadStatus, BeadType, GitStrategy


class Project(Response):
    id: Id
    name: str
    description: str
    git_repo: str | None
    default_branch: str
    git_strategy: GitStrategy
    dedicated: bool
    max_concurrent: int | None
    created_at: datetime
    updated_at: datetime


class Bead(Response):
    id: Id
    project_id: Id
    title: str
    description: str
    type: BeadType
    priority: Annotated[int, Field(ge=0, le=3)]
    status: BeadStatus
    tags: list[str]
    acceptance: str | None
    assigned_to: Id | None = Field(description="the agent working on it (or last worked on it)")
    owner_id: Id | None = Field(description="the person responsible for it")
    lease_expires_at: datetime | None
    fencing_token: int
    dispatch_count: int
    error_history: list[Json]
    status_reason: str | None
    block_kind: str | None = Field(description="user, escalation, loop, workspace, provider, auth, rate_limit, ...")
    meta: Json
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    blocked_by: list[Id]
    blocks: list[Id]


class Comment(Response):
    id: Id
    bead_id: Id
    author: str
    text: str
    created_at: datetime


# --- the engine's ledger
class Run(Response):
    id: Id
    bead_id: Id
    agent_id: Id | None
    project_id: Id
    fencing_token: int
    status: Literal["running", "finished", "failed", "stopped", "abandoned"]
    terminal_reason: str | None
    iterations: int
    resumes: int
    paused_by: str | None = Field(description="who holds the run for pair programming (the loop waits)")
    paused_at: datetime | None
    prompt_tokens: int
    completion_tokens: int
    started_at: datetime
    finished_at: datetime | None


class Step(Response):
    id: Id
    run_id: Id
    bead_id: Id
    seq: int
    kind: Literal["loop", "pair"]
    author: str | None = Field(description="kind=pair: the person whose message `request` is")
    attempts: int
    status: str
    request: str
    response: str
    notes: str | None
    actions: list[Json]
    results: list[Json]
    parse_error: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    created_at: datetime
    applied_at: datetime | None


class Event(Response):
    id: Annotated[str, Field(pattern=r"^\d+-\d+$")]
    type: str
    ts: datetime
    project_id: Id | None
    bead_id: Id | Absent = None
    agent_id: Id | Absent = None
    data: Json


class EventList(Response):
    items: list[Event]
    total: int
    last_id: str | None = Field(description="the newest event id in the buffer (pass it as `since`)")


