"""The read side of analytics: filters, totals with latency percentiles, and time buckets for the charts.

Percentiles are nearest-rank over successful requests (the value at rank ceil(p * n) in latency order),
computed in SQL with window functions, so PostgreSQL and SQLite give the same answer.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, Integer, and_, case, cast, func, select
from sqlalchemy.sql import ColumnElement, Select

from app.extensions import db
from app.models import Agent, LLMRequest, Project
from app.services.errors import ValidationError

GROUPS: dict[str, ColumnElement] = {"project": LLMRequest.project_id, "agent": LLMRequest.agent_id,
                                    "persona": LLMRequest.persona, "model": LLMRequest.model}
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
AUTO_STEPS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
AUTO_POINTS = 120  # "auto" picks the smallest step that keeps the chart under this many points
MAX_POINTS = 2000
MAX_SERIES = 10
DEFAULT_RANGE = timedelta(hours=24)
OK = LLMRequest.status == "ok"
EMPTY = {"requests": 0, "ok": 0, "errors": 0, "budget_refusals": 0, "error_rate": 0.0, "prompt_tokens": 0,
         "completion_tokens": 0, "tokens": 0, "cost_usd": 0.0, "latency_avg_ms": None, "latency_p50_ms": None,
         "latency_p95_ms": None, "unpriced": 0}
REFUSED = LLMRequest.status == "budget"


@dataclass(frozen=True)
class Filters:
    """Which requests: all given conditions hold. `since` is inclusive, `until` exclusive."""

    project_id: int | None = None
    bead_id: int | None = None
    agent_id: int | None = None
    persona: str | None = None
    model: str | None = None
    source: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement]:
        out = [getattr(LLMRequest, name) == value for name, value in asdict(self).items()
               if value is not None and name not in ("since", "until")]
        if self.since is not None:
            out.append(LLMRequest.ts >= self.since)
        if self.until is not None:
            out.append(LLMRequest.ts < self.until)
        return out

    def apply(self, query: Select) -> Select:
        conditions = self.conditions()
        return query.where(and_(*conditions)) if conditions else query

    def to_dict(self) -> dict:
        return {k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v)
                for k, v in asdict(self).items() if v is not None}


def _metric_columns() -> list:
    errors = ~LLMRequest.status.in_(("ok", "budget"))
    return [func.count().label("requests"),
            func.coalesce(func.sum(case((OK, 1), else_=0)), 0).label("ok"),
            func.coalesce(func.sum(case((errors, 1), else_=0)), 0).label("errors"),
            func.coalesce(func.sum(case((REFUSED, 1), else_=0)), 0).label("budget_refusals"),
            func.coalesce(func.sum(LLMRequest.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(LLMRequest.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(LLMRequest.cost_usd), 0.0).label("cost_usd"),
            func.avg(case((OK, LLMRequest.latency_ms), else_=None)).label("latency_avg_ms"),
            func.coalesce(func.sum(case((~LLMRequest.priced, 1), else_=0)), 0).label("unpriced")]


def _metrics(row, percentiles: tuple[float | None, float | None]) -> dict:
    requests, errors = int(row.requests), int(row.errors)
    prompt, completion = int(row.prompt_tokens), int(row.completion_tokens)
    return {"requests": requests, "ok": int(row.ok), "errors": errors, "budget_refusals": int(row.budget_refusals),
            "error_rate": errors / requests if requests else 0.0, "prompt_tokens": prompt,
            "completion_tokens": completion, "tokens": prompt + completion, "cost_usd": float(row.cost_usd),
            "latency_avg_ms": float(row.latency_avg_ms) if row.latency_avg_ms is not None else None,
            "latency_p50_ms": percentiles[0], "latency_p95_ms": percentiles[1], "unpriced": int(row.unpriced)}


def _percentiles(filters: Filters, keys: list[ColumnElement]) -> dict[tuple, tuple[float | None, float | None]]:
    """{group key tuple: (p50, p95)} by nearest rank over successful requests; integer maths for ceil()."""
    ranked = filters.apply(select(
        *[key.label(f"k{i}") for i, key in enumerate(keys)], LLMRequest.latency_ms.label("latency"),
        func.row_number().over(partition_by=keys or None, order_by=(LLMRequest.latency_ms, LLMRequest.id))
        .label("rn"),
        func.count().over(partition_by=keys or None).label("n")).where(OK)).subquery()
    key_cols = [ranked.c[f"k{i}"] for i in range(len(keys))]
    rank50, rank95 = (ranked.c.n * 50 + 99) // 100, (ranked.c.n * 95 + 99) // 100
    rows = db.session.execute(select(*key_cols, ranked.c.latency, ranked.c.rn, rank50.label("r50"),
                                     rank95.label("r95"))
                              .where((ranked.c.rn == rank50) | (ranked.c.rn == rank95))).all()
    out: dict[tuple, list] = {}
    for row in rows:
        key = tuple(row[: len(keys)])
        slot = out.setdefault(key, [None, None])
        if row.rn == row.r50:
            slot[0] = float(row.latency)
        if row.rn == row.r95:
            slot[1] = float(row.latency)
    return {key: (p[0], p[1]) for key, p in out.items()}


def _labels(group_by: str, keys: list) -> dict:
    """Readable names for project and agent ids (persona and model are their own names)."""
    ids = [k for k in keys if k is not None]
    if group_by == "project" and ids:
        return dict(db.session.execute(select(Project.id, Project.name).where(Project.id.in_(ids))).all())
    if group_by == "agent" and ids:
        return dict(db.session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(ids))).all())
    return {k: k for k in keys}


def _check_group(group_by: str | None) -> None:
    if group_by is not None and group_by not in GROUPS:
        raise ValidationError(f"group_by must be one of {', '.join(GROUPS)}", "group_by")


def summary(filters: Filters, group_by: str | None = None) -> dict:
    """Totals over the filtered requests, and the same per group (largest cost first)."""
    _check_group(group_by)
    totals_row = db.session.execute(filters.apply(select(*_metric_columns()))).one()
    totals = _metrics(totals_row, _percentiles(filters, []).get((), (None, None)))
    unpriced = db.session.scalars(filters.apply(select(LLMRequest.model).where(~LLMRequest.priced)
                                                .group_by(LLMRequest.model).order_by(LLMRequest.model))).all()
    groups: list[dict] = []
    if group_by is not None:
        key = GROUPS[group_by]
        rows = db.session.execute(filters.apply(select(key.label("key"), *_metric_columns())).group_by(key)).all()
        percentiles = _percentiles(filters, [key])
        labels = _labels(group_by, [row.key for row in rows])
        groups = [{"key": row.key, "label": labels.get(row.key, row.key), **_metrics(row, percentiles.get(
            (row.key,), (None, None)))} for row in rows]
        groups.sort(key=lambda g: (-g["cost_usd"], -g["requests"], str(g["key"])))
    return {"filters": filters.to_dict(), "group_by": group_by, "totals": totals, "groups": groups,
            "unpriced_models": list(unpriced)}


def _epoch_bucket(step: int) -> ColumnElement:
    """The start of each request's time bucket, in seconds since 1970 (UTC), on either database."""
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", LLMRequest.ts) / step), BigInteger) * step
    return (cast(func.strftime("%s", LLMRequest.ts), Integer) // step) * step


def choose_step(bucket: str, since: datetime, until: datetime) -> int:
    span = max(1.0, (until - since).total_seconds())
    if bucket == "auto":
        step = next((s for s in AUTO_STEPS if span / s <= AUTO_POINTS), AUTO_STEPS[-1])
    elif bucket in BUCKETS:
        step = BUCKETS[bucket]
    else:
        raise ValidationError(f"bucket must be auto or one of {', '.join(BUCKETS)}", "bucket")
    if span / step > MAX_POINTS:
        raise ValidationError(f"{bucket} buckets over this range make more than {MAX_POINTS} points: "
                              "narrow since/until or use a larger bucket", "bucket")
    return step


def timeseries(filters: Filters, bucket: str = "auto", group_by: str | None = None,
               now: datetime | None = None) -> dict:
    """Metrics per time bucket from `since` to `until` (default: the last 24 h), every bucket present.

    With `group_by`, one series per group (the MAX_SERIES with most requests; `truncated` says if more).
    """
    _check_group(group_by)
    until = filters.until or now or datetime.now(UTC)
    since = filters.since or until - DEFAULT_RANGE
    if since >= until:
        raise ValidationError("since must be before until", "since")
    step = choose_step(bucket, since, until)
    filters = Filters(**{**asdict(filters), "since": since, "until": until})
    t = _epoch_bucket(step)
    keys = [t] + ([GROUPS[group_by]] if group_by else [])
    rows = db.session.execute(filters.apply(select(*[k.label(f"k{i}") for i, k in enumerate(keys)],
                                                   *_metric_columns())).group_by(*keys)).all()
    percentiles = _percentiles(filters, keys)
    first = int(since.timestamp()) // step * step
    starts = list(range(first, math.ceil(until.timestamp()), step))
    by_group: dict = {}
    for row in rows:
        group = row[1] if group_by else None
        by_group.setdefault(group, {})[int(row[0])] = _metrics(row, percentiles.get(tuple(row[: len(keys)]),
                                                                                  (None, None)))
    ranked = sorted(by_group, key=lambda g: (-sum(p["requests"] for p in by_group[g].values()), str(g)))
    if not group_by:
        ranked = [None]
    labels = _labels(group_by, ranked) if group_by else {None: None}
    empty = {**EMPTY}
    series = [{"key": g, "label": labels.get(g, g), "points": [
        {"t": datetime.fromtimestamp(s, UTC).isoformat().replace("+00:00", "Z"),
         **by_group.get(g, {}).get(s, empty)} for s in starts]} for g in ranked[:MAX_SERIES]]
    return {"filters": filters.to_dict(), "bucket_s": step, "group_by": group_by, "series": series,
            "truncated": len(ranked) > MAX_SERIES}
