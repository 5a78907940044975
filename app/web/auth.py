"""flask-login wiring: how a session cookie becomes a user (sessions die when the password changes)."""
from __future__ import annotations

from flask import Flask

from app.extensions import db, login_manager
from app.models import User


def init_login(app: Flask) -> None:
    app.config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.auth_version != int(version) or not user.is_active:
        return None
    from app.web.security import session_ended  # noqa: PLC0415 (security imports this module's login manager)
    return None if session_ended() else user
