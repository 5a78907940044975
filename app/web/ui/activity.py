"""The activity feed page and the caller's notifications page (inbox, preferences, webhook deliveries)."""
from __future__ import annotations

from flask import render_template, request
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.services import activity as activity_service
from app.services import notification_prefs as prefs
from app.services import notifications as service
from app.services import projects as project_service
from app.services.notification_rules import NOTIFICATION_TYPES
from app.web.ui.pages import bp, page

PAGE_SIZE = 50


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 10 else None


@bp.app_context_processor
def inject_unread() -> dict:
    """The header's unread badge, rendered with every page (the live stream keeps it current)."""
    if not current_user.is_authenticated:
        return {}
    try:
        return {"unread_count": service.unread_count(current_user.id)}
    except SQLAlchemyError:  # an error page while the database is away still renders
        db.session.rollback()
        return {}


@page("/activity", permission="activity:read")
def activity():
    kind = request.args.get("type") or None
    kind = kind if kind in activity_service.ACTIVITY_TYPES else None
    actor = (request.args.get("actor") or "").strip()[:100] or None
    project_id, offset = _int_arg("project_id"), _int_arg("offset") or 0
    items, total = activity_service.list_activity(project_id=project_id, type=kind, actor=actor,
                                                  limit=PAGE_SIZE, offset=offset)
    projects, _ = project_service.list_projects(limit=500)
    return render_template("ui/activity.html", items=[activity_service.activity_view(a) for a in items],
                           total=total, offset=offset, page_size=PAGE_SIZE, types=list(activity_service.ACTIVITY_TYPES),
                           projects={p.id: p.name for p in projects},
                           filters={"project_id": project_id, "type": kind, "actor": actor})


@page("/notifications", permission="notifications:own")
def notifications():
    items, total = service.list_notifications(current_user.id, limit=100)
    deliveries, _ = service.list_deliveries(current_user.id, limit=20)
    return render_template("ui/notifications.html", items=[n.to_dict() for n in items], total=total,
                           preferences=prefs.preferences_view(current_user.id), types=NOTIFICATION_TYPES,
                           deliveries=[d.to_dict() for d in deliveries])
