"""`GET /metrics`: Prometheus text exposition (0.0.4). Needs `system:read` (a bearer token or an API key,
which Prometheus sends with `authorization: {credentials: ...}`), or nothing with LOOM_METRICS_PUBLIC=true."""
from __future__ import annotations

from flask import Blueprint, Response, current_app

from app.services import metrics
from app.web.api import responses as r
from app.web.api.routing import route

bp = Blueprint("metrics", __name__)


@route(bp, "/metrics", permission="system:read", public_when="METRICS_PUBLIC", tag="meta",
       summary="Prometheus metrics: beads, runs, steps, LLM usage, queues, Ralph (text format 0.0.4)",
       response=r.PlainText, media_type="text/plain")
def prometheus() -> Response:
    body = metrics.scrape(current_app.extensions["loom.redis"](), current_app.config)
    return Response(body, status=200, content_type=metrics.CONTENT_TYPE)
