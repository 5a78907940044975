"""Operator pages: live logs, and administration (users and roles, API keys, security events)."""
from __future__ import annotations

from flask import render_template, request

from app.models import ROLES
from app.services import api_keys, security_log
from app.services import logs as log_service
from app.services import users as user_service
from app.web.ui.pages import page

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@page("/logs", permission="logs:read")
def logs():
    level = request.args.get("level") if request.args.get("level") in LEVELS else None
    source = (request.args.get("source") or "").strip()[:64] or None
    bead = request.args.get("bead_id", "")
    bead_id = int(bead) if bead.isdigit() and int(bead) < 2**31 else None
    items, total = log_service.list_logs(level=level, source=source, bead_id=bead_id, limit=200)
    return render_template("ui/logs.html", entries=[e.to_dict() for e in items], total=total, levels=LEVELS,
                           filters={"level": level, "source": source, "bead_id": bead_id})


@page("/admin", permission="users:admin")
def admin():
    users, user_total = user_service.list_users(limit=500)
    keys, key_total = api_keys.list_api_keys(None, limit=500)
    events, event_total = security_log.list_security_events(limit=100)
    return render_template("ui/admin.html", users=[u.to_dict() for u in users], user_total=user_total,
                           keys=[k.to_dict(name) for k, name in keys], key_total=key_total,
                           events=[e.to_dict() for e in events], event_total=event_total, roles=ROLES)
