"""JSON routes for runtime configuration, logs, and the OpenAPI document."""
from __future__ import annotations

from flask import current_app

from app.services import logs as log_service
from app.services import settings
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.openapi import build_openapi
from app.web.api.routing import actor_name, bp, paged, route


def _defaults() -> dict:
    cfg = current_app.config
    return {"dispatch.max_concurrent": cfg["MAX_CONCURRENT"], "dispatch.max_per_project": cfg["MAX_PER_PROJECT"],
            "loop.max_iterations": min(100, cfg["MAX_ITERATIONS"]), "lease_seconds": cfg["LEASE_SECONDS"],
            "dispatch.enabled": True}


@route(bp, "/config", permission="system:admin", tag="system", summary="Runtime settings and their overrides",
       response=r.list_of(r.ConfigEntry))
def get_config():
    items = settings.effective_config(_defaults())
    return {"items": items, "total": len(items)}


@route(bp, "/config/<string(maxlength=100):key>", methods=("PUT",), permission="system:admin", tag="system",
       summary="Override a runtime setting", body=s.ConfigValue, response=r.Setting)
def put_config(key: str, body: s.ConfigValue):
    return settings.set_setting(key, body.value, actor_name()).to_dict()


@route(bp, "/logs", permission="logs:read", tag="system", summary="Structured log entries, newest first",
       query=s.LogFilters, response=r.page_of(r.LogEntry))
def list_logs(query: s.LogFilters):
    items, total = log_service.list_logs(level=query.level, source=query.source, bead_id=query.bead_id,
                                         since=query.since, limit=query.limit, offset=query.offset)
    return paged([e.to_dict() for e in items], total, query)


@route(bp, "/openapi.json", permission=None, tag="system", summary="This API as an OpenAPI 3.1 document",
       response=r.OpenAPIDocument)
def openapi():
    return build_openapi()
