"""Answers of the motivation routes: a motivation (with its trigger in words) and its firings."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.web.api.responses.base import Id, Json, Response


class Motivation(Response):
    id: Id
    name: str
    kind: Literal["interval", "calendar", "event", "idle", "threshold"]
    event: str | None
    interval_s: int | None
    cron: str | None
    idle_minutes: int | None
    threshold: Json | None = Field(description='{"metric", "op", "value"}')
    cooldown_s: int
    project_id: Id | None = Field(description="none: every project")
    persona: str | None
    bead_template: Json | None = Field(description='{"title", "description"?, "priority"?, "type"?, "tags"?, ...}')
    wake_agent: bool
    enabled: bool
    builtin: bool
    description: str
    enabled_at: datetime | None
    last_fired_at: datetime | None
    fire_count: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    trigger: str = Field(description="the trigger in words, e.g. 'every 2 h'")
    next_due: datetime | None = Field(description="calendar motivations: when they come due next")


class MotivationFiring(Response):
    id: Id
    motivation_id: Id
    motivation_name: str
    dedup_key: str = Field(description="the occasion: one firing per key")
    project_id: Id | None
    trigger: Json
    bead_id: Id | None
    agent_id: Id | None
    outcome: Literal["pending", "fired", "skipped", "failed"]
    detail: str | None
    fired_at: datetime
