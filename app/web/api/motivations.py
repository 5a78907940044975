"""JSON routes for motivations (proactive triggers), their manual trigger and their history of firings."""
from __future__ import annotations

from typing import Annotated, Literal

from flask import current_app
from pydantic import Field

from app.models import MOTIVATION_KINDS
from app.services import motivation_triggers as triggers
from app.services import motivations as service
from app.services.motivations import EVENT_TYPES, METRICS, OPS
from app.web.api import responses as r
from app.web.api.routing import actor_name, bp, paged, route
from app.web.api.schema_base import Body, Page
from app.web.api.schemas import BeadType, Id, LongText, Name, Priority, Tag, Title
from workers.dispatch import request_dispatch

ONE = "/motivations/<id:motivation_id>"
Kind = Literal[MOTIVATION_KINDS]  # type: ignore[valid-type]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
Seconds = Annotated[int, Field(ge=0, le=366 * 86_400)]
PersonaName = Annotated[str, Field(min_length=1, max_length=64)]


class BeadTemplate(Body):
    title: Annotated[Title, Field(description="placeholders: {bead_id} {title} {project} {date} {time} {value} ...")]
    description: LongText = ""
    priority: Priority = 2
    type: BeadType = "task"
    tags: Annotated[list[Tag], Field(max_length=10)] = []
    acceptance: Annotated[str, Field(max_length=4000)] | None = None


class Threshold(Body):
    metric: Literal[METRICS]  # type: ignore[valid-type]
    op: Literal[OPS] = ">"  # type: ignore[valid-type]
    value: Annotated[float, Field(ge=0, le=1e12)]


class MotivationCreate(Body):
    name: Name
    kind: Kind
    event: EventType | None = None
    interval_s: Annotated[int, Field(ge=1, le=366 * 86_400)] | None = None
    cron: Annotated[str, Field(min_length=1, max_length=100, description="5 fields, UTC")] | None = None
    idle_minutes: Annotated[int, Field(ge=1, le=525_600)] | None = None
    threshold: Threshold | None = None
    cooldown_s: Seconds = 0
    project_id: Id | None = None
    persona: PersonaName | None = None
    bead_template: BeadTemplate | None = None
    wake_agent: bool = False
    enabled: bool = True
    description: Annotated[str, Field(max_length=4000)] = ""


class MotivationUpdate(Body):
    name: Name | None = None
    kind: Kind | None = None
    event: EventType | None = None
    interval_s: Annotated[int, Field(ge=1, le=366 * 86_400)] | None = None
    cron: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    idle_minutes: Annotated[int, Field(ge=1, le=525_600)] | None = None
    threshold: Threshold | None = None
    cooldown_s: Seconds | None = None
    project_id: Id | None = None
    persona: PersonaName | None = None
    bead_template: BeadTemplate | None = None
    wake_agent: bool | None = None
    enabled: bool | None = None
    description: Annotated[str, Field(max_length=4000)] | None = None


class TriggerNow(Body):
    project_id: Id | None = None
    bead_id: Id | None = None


class MotivationFilters(Page):
    project_id: Id | None = None
    kind: Kind | None = None
    enabled: bool | None = None


class HistoryFilters(Page):
    motivation_id: Id | None = None
    project_id: Id | None = None
    outcome: Literal["pending", "fired", "skipped", "failed"] | None = None


def _min_interval() -> float:
    return float(current_app.config["MOTIVATIONS_INTERVAL"])


@route(bp, "/motivations", permission="projects:read", summary="List motivations", tag="motivations",
       query=MotivationFilters, response=r.page_of(r.Motivation))
def list_motivations(query: MotivationFilters):
    items, total = service.list_motivations(project_id=query.project_id, kind=query.kind, enabled=query.enabled,
                                            limit=query.limit, offset=query.offset)
    return paged([service.motivation_view(m) for m in items], total, query)


@route(bp, "/motivations", methods=("POST",), permission="projects:write", status=201, tag="motivations",
       summary="Create a motivation (interval, calendar, event, idle or threshold)", body=MotivationCreate,
       response=r.Motivation)
def create_motivation(body: MotivationCreate):
    motivation = service.create_motivation(body.model_dump(), min_interval_s=_min_interval(), actor=actor_name())
    return service.motivation_view(motivation), 201


@route(bp, "/motivations/history", permission="projects:read", summary="Firings of motivations, newest first",
       tag="motivations", query=HistoryFilters, response=r.page_of(r.MotivationFiring))
def motivation_history(query: HistoryFilters):
    items, total = service.list_firings(motivation_id=query.motivation_id, project_id=query.project_id,
                                        outcome=query.outcome, limit=query.limit, offset=query.offset)
    return paged(items, total, query)


@route(bp, ONE, permission="projects:read", summary="Get a motivation", tag="motivations", response=r.Motivation)
def get_motivation(motivation_id: int):
    return service.motivation_view(service.get_motivation(motivation_id))


@route(bp, ONE, methods=("PATCH",), permission="projects:write", summary="Update, enable or disable a motivation",
       tag="motivations", body=MotivationUpdate, response=r.Motivation)
def update_motivation(motivation_id: int, body: MotivationUpdate):
    changes = body.given()
    if changes.get("enabled") is None:
        changes.pop("enabled", None)
    motivation = service.update_motivation(motivation_id, changes, min_interval_s=_min_interval())
    return service.motivation_view(motivation)


@route(bp, ONE, methods=("DELETE",), permission="projects:write", status=204, tag="motivations",
       summary="Delete a motivation (built-in ones can only be disabled)")
def delete_motivation(motivation_id: int):
    service.delete_motivation(motivation_id)
    return "", 204


@route(bp, ONE + "/trigger", methods=("POST",), permission="projects:write", status=201, tag="motivations",
       summary="Fire a motivation now (ignores its cooldown); returns the firing", body=TriggerNow,
       response=r.MotivationFiring)
def trigger_motivation(motivation_id: int, body: TriggerNow):
    firing = triggers.trigger_now(motivation_id, project_id=body.project_id, bead_id=body.bead_id,
                                  actor=actor_name(), wake=request_dispatch)
    return {**firing.to_dict(), "motivation_name": service.get_motivation(motivation_id).name}, 201
