"""Answers about who does the work: agents, personas, LLM providers."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.web.api.responses.base import Id, Json, Response


class Agent(Response):
    id: Id
    name: str
    persona: str
    role: str
    project_id: Id | None
    status: Literal["idle", "working", "paused", "complete"]
    current_bead_id: Id | None
    last_heartbeat_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PersonaSummary(Response):
    name: str
    title: str
    role: str
    description: str
    hints: list[str]
    builtin: bool
    updated_at: datetime


class Persona(PersonaSummary):
    instructions: str
    meta: Json


class Provider(Response):
    id: Id
    name: str
    endpoint: str
    model: str | None
    api_key: str | None = Field(description="masked (****abcd) when set; the key itself is never returned")
    status: Literal["unknown", "healthy", "degraded", "down"]
    latency_ms: float | None
    last_error: str | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime


