"""JSON route of the team's activity feed (filterable, paged, newest first)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from app.services import activity as service
from app.web.api import responses as r
from app.web.api.responses.activity import ActivityType
from app.web.api.routing import bp, paged, route
from app.web.api.schema_base import Page
from app.web.api.schemas import Id
from app.web.api.when import When


class ActivityFilters(Page):
    project_id: Id | None = None
    type: ActivityType | None = None
    actor: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    since: When | None = None


@route(bp, "/activity", permission="activity:read", tag="activity", query=ActivityFilters,
       summary="The activity feed, newest first; repeats by one actor within 5 minutes are one line with a count",
       response=r.page_of(r.Activity))
def list_activity(query: ActivityFilters):
    items, total = service.list_activity(project_id=query.project_id, type=query.type, actor=query.actor,
                                         since=query.since, limit=query.limit, offset=query.offset)
    return paged([service.activity_view(a) for a in items], total, query)
