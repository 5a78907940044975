"""Answers of the activity feed and notification routes."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from app.services.activity import ACTIVITY_TYPES
from app.services.notification_rules import NOTIFICATION_TYPES
from app.web.api.responses.base import Absent, Id, Json, Response

ActivityType = Literal[tuple(ACTIVITY_TYPES)]  # type: ignore[valid-type]
NotificationType = Literal[NOTIFICATION_TYPES]  # type: ignore[valid-type]


class Activity(Response):
    id: Id
    type: ActivityType
    actor: str = Field(description="a user, an agent, motivation:<name>, or system")
    project_id: Id | None
    bead_id: Id | None = Field(description="the latest bead acted on")
    agent_id: Id | None
    summary: str
    data: Json = Field(description='{"items": [{"bead_id"?, "title"?, ...}]}: the last subjects of the line')
    count: int = Field(description="how many times the actor did this within five minutes of the previous one")
    created_at: datetime
    last_at: datetime


class Notification(Response):
    id: Id
    user_id: Id
    type: NotificationType
    title: str
    body: str
    link: str | None = Field(description="a page path, e.g. /beads/12")
    priority: int | None
    project_id: Id | None
    bead_id: Id | None
    created_at: datetime
    read_at: datetime | None
    read: bool


class NotificationPage(Response):
    items: list[Notification]
    total: int
    limit: int
    offset: int
    unread: int = Field(description="the user's unread notifications, whatever the filters")


class ReadAll(Response):
    marked: int
    unread: int


class NotificationPreferences(Response):
    user_id: Id
    types: list[NotificationType] | None = Field(description="null: every type")
    min_priority: int = Field(description="bead notifications for P0..P<min_priority> only")
    quiet_start: str | None = Field(description="HH:MM UTC: webhooks wait until quiet_end")
    quiet_end: str | None
    webhook_url: str | None
    webhook_enabled: bool
    webhook_secret_set: bool
    webhook_secret: str | Absent = Field(None, description="only in the answer that generated it")
    updated_at: datetime | None
    known_types: list[NotificationType]


class WebhookDelivery(Response):
    id: Id
    notification_id: Id
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
