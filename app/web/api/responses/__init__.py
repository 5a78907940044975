"""Success answers of the JSON API as pydantic models: they document (never build) what the views return.

A route names its model with `route(..., response=r.Model)`; `r.page_of(r.Model)` is the `{items, total,
limit, offset}` shape of `paged()` and `r.list_of(r.Model)` the unpaged `{items, total}`. Models refuse unknown
keys, so a `to_dict()` that grows a key without its model fails tests/test_api_schemathesis.py. A new resource
puts its models in a module of its own here and re-exports them below.
"""
from app.web.api.responses.activity import (Activity, Notification, NotificationPage, NotificationPreferences,
                                            ReadAll, WebhookDelivery)
from app.web.api.responses.analytics import Budget, LLMRequest, ModelPrice, Summary, Timeseries
from app.web.api.responses.auth import ApiKey, ApiKeyCreated, LoginAnswer, Me, SecurityEvent, User
from app.web.api.responses.base import (Absent, EventStream, Id, Json, Ok, PlainText, Response, ResponseJsonSchema,
                                        list_of, page_of)
from app.web.api.responses.motivations import Motivation, MotivationFiring
from app.web.api.responses.system import ConfigEntry, LogEntry, OpenAPIDocument, Live, Ready, Setting
from app.web.api.responses.team import Agent, Persona, PersonaSummary, Provider
from app.web.api.responses.work import Bead, Comment, Event, EventList, Project, Run, Step

__all__ = [
    "Absent", "Agent", "ApiKey", "ApiKeyCreated", "Bead", "Comment", "ConfigEntry", "Event", "EventList",
    "EventStream", "Id", "Json", "list_of", "Live", "LogEntry", "LoginAnswer", "Me", "Motivation",
    "MotivationFiring", "Ok", "OpenAPIDocument", "page_of", "Persona", "PersonaSummary", "PlainText", "Project",
    "Provider", "Ready", "Response", "ResponseJsonSchema", "Run", "SecurityEvent", "Setting", "Step", "User",
    "Budget", "LLMRequest", "ModelPrice", "Summary", "Timeseries", "Activity", "Notification", "NotificationPage",
    "NotificationPreferences", "ReadAll", "WebhookDelivery",
]
