"""Query strings and bodies of the analytics, price and budget routes (pydantic; also their OpenAPI schemas)."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from app.services.analytics_query import Filters
from app.web.api.schemas import Body, Id, Page, Query

RELATIVE = re.compile(r"^(\d{1,6})([mhdw])$")
UNENCODED_PLUS = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:\d\d)$")  # "+01:00" sent unencoded
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: object) -> datetime:
    """ISO 8601 (a date means its UTC midnight; no zone means UTC), or a span back from now: 15m, 24h, 7d, 2w."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError("expected a time: ISO 8601 or a span like 24h")
    text = UNENCODED_PLUS.sub(r"\1+\2", value.strip())
    relative = RELATIVE.match(text)
    if relative:
        return datetime.now(UTC) - timedelta(**{UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            raise ValueError("expected ISO 8601 (2026-01-31 or 2026-01-31T12:00:00Z) or a span like 15m, 24h, "
                             "7d, 2w") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


When = Annotated[datetime, BeforeValidator(parse_when),
                 Field(description="ISO 8601 time or date (UTC unless a zone is given), or a span back from "
                                   "now: 15m, 24h, 7d, 2w")]
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
