"""JSON routes of the caller's own notifications: the inbox, marking read, preferences and webhook deliveries."""
from __future__ import annotations

from typing import Annotated

from flask import current_app
from pydantic import Field

from app.services import notification_prefs as prefs
from app.services import notifications as service
from app.web.api import responses as r
from app.web.api.responses.activity import NotificationType
from app.web.api.routing import bp, paged, route
from app.web.api.schema_base import Body, Page
from app.web.security import current_principal

Clock = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, UTC")]


class NotificationFilters(Page):
    unread: bool | None = None
    type: NotificationType | None = None


class PreferencesUpdate(Body):
    types: Annotated[list[NotificationType], Field(max_length=20)] | None = None
    min_priority: Annotated[int, Field(ge=0, le=3)] | None = None
    quiet_start: Clock | None = None
    quiet_end: Clock | None = None
    webhook_url: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    webhook_secret: Annotated[str, Field(min_length=16, max_length=200)] | None = None
    webhook_enabled: bool | None = None


def _me() -> int:
    return current_principal().id


@route(bp, "/notifications", permission="notifications:own", tag="notifications", query=NotificationFilters,
       summary="Your notifications, newest first, with your unread count", response=r.NotificationPage)
def list_notifications(query: NotificationFilters):
    items, total = service.list_notifications(_me(), unread=query.unread, type=query.type, limit=query.limit,
                                              offset=query.offset)
    return {**paged([n.to_dict() for n in items], total, query), "unread": service.unread_count(_me())}


@route(bp, "/notifications/<id:notification_id>/read", methods=("POST",), permission="notifications:own",
       tag="notifications", summary="Mark one of your notifications read", response=r.Notification)
def read_notification(notification_id: int):
    return service.mark_read(_me(), notification_id).to_dict()


@route(bp, "/notifications/read-all", methods=("POST",), permission="notifications:own", tag="notifications",
       summary="Mark all your notifications read", response=r.ReadAll)
def read_all_notifications():
    return {"marked": service.mark_all_read(_me()), "unread": service.unread_count(_me())}


@route(bp, "/notifications/preferences", permission="notifications:own", tag="notifications",
       summary="Your notification preferences", response=r.NotificationPreferences)
def get_preferences():
    return prefs.preferences_view(_me())


@route(bp, "/notifications/preferences", methods=("PUT",), permission="notifications:own", tag="notifications",
       body=PreferencesUpdate, response=r.NotificationPreferences,
       summary="Change your notification preferences (only the fields sent; a webhook URL without a secret gets "
               "a generated one, shown once in this answer)")
def put_preferences(body: PreferencesUpdate):
    _, generated = prefs.update_preferences(_me(), body.given(), current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    return prefs.preferences_view(_me(), generated)


@route(bp, "/notifications/webhook-deliveries", permission="notifications:own", tag="notifications", query=Page,
       summary="Your webhook deliveries, newest first (status, attempts, last error)",
       response=r.page_of(r.WebhookDelivery))
def list_webhook_deliveries(query: Page):
    items, total = service.list_deliveries(_me(), limit=query.limit, offset=query.offset)
    return paged([d.to_dict() for d in items], total, query)
