"""JSON routes for analytics: totals and breakdowns, chart series, the request log, export, the price table."""
from __future__ import annotations

from flask import Response

from app.services import analytics, pricing
from app.web.api import analytics_schemas as a
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import actor_name, bp, paged, route

MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
PRICE = "/analytics/prices/<path(maxlength=200):name>"  # model names may hold "/"; the service checks the length


@route(bp, "/analytics/summary", permission="analytics:read", tag="analytics", query=a.SummaryQuery,
       response=r.Summary,
       summary="LLM requests, tokens, cost, errors and latency p50/p95; per project, agent, persona or model")
def analytics_summary(query: a.SummaryQuery):
    return analytics.summary(query.filters(), query.group_by)


@route(bp, "/analytics/timeseries", permission="analytics:read", tag="analytics", query=a.TimeseriesQuery,
       response=r.Timeseries,
       summary="The same metrics per time bucket (every bucket present), optionally one series per group")
def analytics_timeseries(query: a.TimeseriesQuery):
    return analytics.timeseries(query.filters(), query.bucket, query.group_by)


@route(bp, "/analytics/requests", permission="analytics:read", tag="analytics", query=a.RequestFilters,
       response=r.page_of(r.LLMRequest), summary="Recorded LLM requests, newest first")
def analytics_requests(query: a.RequestFilters):
    items, total = analytics.list_requests(query.filters(), query.limit, query.offset)
    return paged([row.to_dict() for row in items], total, query)


@route(bp, "/analytics/export", permission="analytics:read", tag="analytics", query=a.ExportQuery,
       response=r.LLMRequest, media_type="text/csv",
       summary="Every matching request as CSV (formula-safe) or a JSON array, streamed oldest first")
def analytics_export(query: a.ExportQuery):
    chunks = analytics.export(query.filters(), query.format)
    return Response(chunks, content_type=MEDIA[query.format],
                    headers={"Content-Disposition": f'attachment; filename="loom-llm-requests.{query.format}"',
                             "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@route(bp, "/analytics/prices", permission="analytics:read", tag="analytics", query=s.Page,
       response=r.page_of(r.ModelPrice),
       summary="The price table: USD per million tokens by model pattern (`*` suffix: prefix; longest wins)")
def list_prices(query: s.Page):
    items, total = pricing.list_prices(query.limit, query.offset)
    return paged([row.to_dict() for row in items], total, query)


@route(bp, PRICE, methods=("PUT",), permission="system:admin", tag="analytics",
       body=a.PriceSet, response=r.ModelPrice,
       summary="Set the price of a model name or `prefix*` pattern (new requests only)")
def put_price(name: str, body: a.PriceSet):
    return pricing.set_price(name, body.prompt_usd_per_mtok, body.completion_usd_per_mtok, actor_name()).to_dict()


@route(bp, PRICE, methods=("DELETE",), permission="system:admin", tag="analytics",
       status=204, summary="Remove a price (its models then cost 0 and are flagged unpriced)")
def delete_price(name: str):
    pricing.delete_price(name)
    return "", 204
