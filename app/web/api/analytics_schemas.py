"""Query strings and bodies of the analytics, price and budget routes (pydantic; also their OpenAPI schemas)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from app.services.analytics_query import Filters
from app.web.api.schema_base import Body, Page, Query
from app.web.api.schemas import Id
from app.web.api.when import When

GroupBy = Literal["project", "agent", "persona", "model"]
Usd = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=10**15)]


class AnalyticsFilters(Query):
    project_id: Id | None = None
    bead_id: Id | None = None
    agent_id: Id | None = None
    persona: Annotated[str, Field(max_length=64)] | None = None
    model: Annotated[str, Field(max_length=200)] | None = None
    source: Literal["loop", "pair", "health"] | None = None
    status: Annotated[str, Field(max_length=20)] | None = None
    since: When | None = None
    until: When | None = None

    def filters(self) -> Filters:
        return Filters(project_id=self.project_id, bead_id=self.bead_id, agent_id=self.agent_id,
                       persona=self.persona, model=self.model, source=self.source, status=self.status,
                       since=self.since, until=self.until)


class SummaryQuery(AnalyticsFilters):
    group_by: GroupBy | None = None


class TimeseriesQuery(AnalyticsFilters):
    group_by: GroupBy | None = None
    bucket: Literal["auto", "minute", "hour", "day"] = "auto"


class RequestFilters(AnalyticsFilters, Page):
    pass


class ExportQuery(AnalyticsFilters):
    format: Literal["csv", "json"] = "csv"


class PriceSet(Body):
    prompt_usd_per_mtok: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
    completion_usd_per_mtok: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


class BudgetSet(Body):
    """Limits to set; null clears one (no limit), a field left out keeps its value."""

    daily_usd: Usd | None = None
    total_usd: Usd | None = None
    daily_tokens: Tokens | None = None
    total_tokens: Tokens | None = None
