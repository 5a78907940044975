"""The event ring buffer as JSON, and the live stream as server-sent events (SSE) with keep-alives."""
from __future__ import annotations

import dataclasses
import json
import time

from flask import Response, current_app, request

from app.bus import valid_event_id
from app.bus_live import KEEPALIVE, Filter
from app.extensions import db
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import bp, route
from app.web.security import current_principal, stream_check

KEEPALIVE_S = 15.0


@route(bp, "/events", permission="events:read", tag="events", query=s.EventFilters,
       summary="Recent events from the ring buffer, oldest first; `since` is the last event id you saw",
       response=r.EventList)
def list_events(query: s.EventFilters):
    bus = current_app.extensions["loom.bus"]()
    types = [t.strip() for t in query.type.split(",")] if query.type else None
    user = current_principal()

    def visible(event: dict) -> bool:  # another user's notifications are theirs
        return not event.get("type", "").startswith("notification.") or (event.get("data") or {}).get(
            "user_id") == user.id

    items, cursor, total = bus.history_page(after=query.since, limit=query.limit, project_id=query.project_id,
                                            bead_id=query.bead_id, types=types, keep=visible)
    # `last_id` is where the next poll starts (`since=`): after what this page covered, never past it. `total`: the
    # matching events after `since` still in the buffer, this page's included.
    return {"items": items, "total": total, "last_id": cursor if cursor is not None else bus.last_id()}


@route(bp, "/events/stream", permission="events:read", tag="events", query=s.StreamFilters,
       summary="Live events as server-sent events; resumes after `Last-Event-ID` (or `since`); keep-alive every 15 s",
       response=r.EventStream, media_type="text/event-stream")
def stream_events(query: s.StreamFilters):
    types = [t.strip() for t in query.type.split(",") if t.strip()] if query.type else []
    return sse_response(Filter.parse({"project_id": query.project_id, "bead_id": query.bead_id, "types": types}),
                        query.since, query.max_seconds, "events:read")


@route(bp, "/logs/stream", permission="logs:read", tag="system", query=s.LogStreamFilters,
       summary="New log entries as server-sent events (`log.created`), resumable like /events/stream",
       response=r.EventStream, media_type="text/event-stream")
def stream_logs(query: s.LogStreamFilters):
    wanted = tuple((key, value) for key, value in (("level", query.level), ("source", query.source)) if value)
    flt = dataclasses.replace(Filter.parse({"bead_id": query.bead_id, "types": ["log.created"]}), data=wanted)
    return sse_response(flt, query.since, query.max_seconds, "logs:read")


def sse_response(flt: Filter, since: str | None, max_seconds: float | None, permission: str) -> Response:
    """Stream the hub's events for this caller as SSE; no database connection is held while it runs, and the
    stream ends (`event: stream.closed`) once the caller's login no longer grants `permission`."""
    hub = current_app.extensions["loom.hub"]()
    user_id = current_principal().id
    check, recheck_s = stream_check(permission), float(current_app.config["STREAM_RECHECK_SECONDS"])
    since = request.headers.get("Last-Event-ID") or since
    if since is not None and not valid_event_id(since):
        since = None
    db.session.remove()
    deadline = time.monotonic() + max_seconds if max_seconds else None

    def generate():
        with hub.subscription(user_id, flt) as sub:
            yield ": connected\n\n"
            poll_s = min(1.0, max_seconds, recheck_s) if max_seconds else min(1.0, recheck_s)
            next_check = time.monotonic() + recheck_s
            for item in hub.stream(sub, since, keepalive_s=KEEPALIVE_S, poll_s=poll_s):
                if deadline is not None and time.monotonic() >= deadline:
                    return
                if time.monotonic() >= next_check:  # the login may have ended since the request
                    if (ended := check()) is not None:
                        yield f"event: stream.closed\ndata: {json.dumps({'reason': ended})}\n\n"
                        return
                    next_check = time.monotonic() + recheck_s
                if item is KEEPALIVE:
                    yield ": keep-alive\n\n"
                elif item is not None:
                    event_id = json.loads(item).get("id")
                    yield (f"id: {event_id}\n" if event_id else "") + f"data: {item}\n\n"

    return Response(generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
