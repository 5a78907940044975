"""Answers about pair programming: whether a person holds a bead's run, and the pair transcript."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.web.api.responses.base import Id, Response
from app.web.api.responses.work import Run, Step
from app.web.api.schemas import BeadStatus


class PairState(Response):
    bead_id: Id
    bead_status: BeadStatus
    state: Literal["none", "running", "paused"] = Field(
        description="none: no loop runs on the bead; running: its loop works; paused: a person holds it")
    run: Run | None
    paused_by: str | None
    paused_at: datetime | None


class PairResumed(PairState):
    loop_enqueued: bool = Field(description="the loop had stopped for the person and was started again")


class PairTranscript(PairState):
    items: list[Step] = Field(description="the bead's pair turns, oldest first")
    total: int
    limit: int
    offset: int
