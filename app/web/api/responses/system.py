"""Answers of the system routes and probes: runtime settings, logs, the OpenAPI document, health."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.web.api.responses.base import Absent, Id, Json, Response


class ConfigEntry(Response):
    key: str
    type: Literal["int", "bool"]
    min: int | None
    max: int | None
    description: str
    default: bool | int | None
    value: bool | int | None
    overridden: bool
    updated_by: str | None


class Setting(Response):
    key: str
    value: bool | int | None
    updated_by: str | None
    updated_at: datetime


class LogEntry(Response):
    id: Id
    ts: datetime
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    source: str
    message: str
    project_id: int | None
    bead_id: int | None
    agent_id: int | None
    data: Json


class OpenAPIDocument(Response):
    openapi: Literal["3.1.0"]
    info: Json
    servers: list[Json]
    components: Json
    security: list[Json]
    paths: Json


# --- probes
class Live(Response):
    status: Literal["ok"]


class CheckPassed(Response):
    ok: Literal[True]
    latency_ms: float


class CheckFailed(Response):
    ok: Literal[False]
    error: str


class Checks(Response):
    database: CheckPassed | CheckFailed
    redis: CheckPassed | CheckFailed


class RalphTick(Response):
    ok: bool = Field(description="false when the last tick is older than three intervals")
    last_tick: datetime
    age_s: float
    duration_ms: float | None


class SandboxState(Response):
    mode: str = Field(description="LOOM_SANDBOX: auto, strict or off")
    network: str = Field(description="LOOM_SANDBOX_NETWORK: none or host")
    isolation: Literal["namespaces", "none"]
    uid: int | Absent = None
    reason: str | Absent = Field(None, description="why commands are not isolated here")
    commands: Literal["refused", "unconfined"] | Absent = None
    error: str | Absent = Field(None, description="the settings are invalid")


class Ready(Response):
    status: Literal["ok", "degraded", "unavailable"]  # degraded: Ralph is not ticking (still ready)
    checks: Checks
    ralph: RalphTick | CheckFailed
    sandbox: SandboxState = Field(description="informational: never fails readiness")
