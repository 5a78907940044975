"""Answers of the analytics, price and budget routes: recorded requests, totals, chart series, budgets."""
from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.web.api.responses.base import Id, Json, Response

GroupKey = int | str | None


class LLMRequest(Response):
    id: Id
    ts: datetime
    project_id: Id | None
    bead_id: Id | None
    agent_id: Id | None
    run_id: Id | None
    seq: int | None
    persona: str | None
    model: str
    provider: str | None = Field(description="host (and port) of the provider")
    source: str = Field(description="loop, pair or health")
    status: str = Field(description='"ok", "budget" (refused before the call) or the error kind')
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost_usd: float
    estimated: bool = Field(description="the provider sent no usage: tokens estimated at ~4 characters each")
    priced: bool = Field(description="false: no price matched the model, so it cost 0")


class ModelPrice(Response):
    pattern: str
    prompt_usd_per_mtok: float
    completion_usd_per_mtok: float
    updated_by: str | None
    updated_at: datetime


class Metrics(Response):
    requests: int
    ok: int
    errors: int = Field(description="failed calls (budget refusals are counted apart)")
    budget_refusals: int
    error_rate: float = Field(description="errors / requests")
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    cost_usd: float
    latency_avg_ms: float | None
    latency_p50_ms: float | None = Field(description="nearest rank over successful requests")
    latency_p95_ms: float | None
    unpriced: int = Field(description="requests of models without a price (cost 0)")


class Group(Metrics):
    key: GroupKey = Field(description="project or agent id, persona or model name")
    label: GroupKey = Field(description="a project's or agent's name; else the key")


class Summary(Response):
    filters: Json
    group_by: str | None
    totals: Metrics
    groups: list[Group]
    unpriced_models: list[str]


class Point(Metrics):
    t: datetime = Field(description="start of the bucket (UTC)")


class Series(Response):
    key: GroupKey
    label: GroupKey
    points: list[Point]


class Timeseries(Response):
    filters: Json
    bucket_s: int
    group_by: str | None
    series: list[Series]
    truncated: bool = Field(description="more groups than series shown")


class Budget(Response):
    id: Id | None = Field(description="null: no budget set yet (no limits; spend from the request log)")
    scope: str = Field(description='"project:<id>" or "bead:<id>"')
    project_id: Id
    bead_id: Id | None
    daily_usd: float | None
    total_usd: float | None
    daily_tokens: int | None
    total_tokens: int | None
    spent_usd: float
    spent_tokens: int
    day: str | None = Field(description="the UTC date the day_* values are for")
    day_usd: float
    day_tokens: int
    reserved_usd: float = Field(description="held by LLM calls in flight")
    reserved_tokens: int
    exhausted_at: datetime | None
    updated_by: str | None
    updated_at: datetime | None
    exhausted: list[str] = Field(description="limits already reached")

