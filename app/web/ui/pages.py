"""The HTML blueprint and `page()`: every page declares its permission in one place, like `route()` for JSON.

Pages are for browsers (session cookie only). An anonymous visit redirects to /login?next=...; a logged-in
user without the page's permission gets a 403 page. `PAGES` lets tests walk every page for the role matrix.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

import redis
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from app.services import users as users_service
from app.web.security import csrf_token

bp = Blueprint("ui", __name__)


@dataclass(frozen=True)
class PageSpec:
    endpoint: str
    rule: str
    method: str
    permission: str | None  # None: public (the login page)


PAGES: list[PageSpec] = []


def user_permissions() -> frozenset[str]:
    return users_service.permissions_of(current_user) if current_user.is_authenticated else frozenset()


def can(permission: str) -> bool:
    """For templates: show a control only to those allowed to use it (the API checks again)."""
    return permission in user_permissions()


def last_event_id() -> str:
    """The newest event when the page was rendered: the page's live stream resumes from it, so nothing that
    happens between rendering and the websocket connecting is missed."""
    try:
        return current_app.extensions["loom.bus"]().last_id() or ""
    except redis.RedisError:
        return ""


@bp.app_context_processor
def inject_helpers() -> dict:
    return {"csrf_token": csrf_token, "can": can, "nav_endpoints": current_app.view_functions,
            "last_event_id": last_event_id}


def page(rule: str, *, permission: str | None, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Register an HTML page on `bp` with its permission."""

    def decorator(view: Callable) -> Callable:
        endpoint = view.__name__

        @wraps(view)
        def wrapper(**kwargs: Any):
            if permission is not None:
                if not current_user.is_authenticated:
                    return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
                if permission not in user_permissions():
                    return render_template("ui/forbidden.html", permission=permission), 403
            return view(**kwargs)

        bp.add_url_rule(rule, endpoint, wrapper, methods=list(methods))
        for method in methods:
            PAGES.append(PageSpec(f"ui.{endpoint}", rule, method, permission))
        return wrapper

    return decorator
