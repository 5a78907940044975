"""Who is calling: a bearer token / API key header, or a flask-login session (with CSRF for writes)."""
from __future__ import annotations

import hmac
import secrets

from flask import current_app, g, request, session
from flask_login import current_user

from app.models import User
from app.services import api_keys
from app.services import users as users_service
from app.services.errors import Forbidden, Unauthorized

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    """The session's CSRF token (created on first use); pages put it in forms and fetch headers."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _header_credential() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-API-Key") or None


def current_principal() -> User | None:
    """The authenticated user of this request, cached on `g`; raises 401 for a bad credential."""
    if "principal" in g:
        return g.principal
    credential = _header_credential()
    user: User | None = None
    g.permissions = None
    if credential is not None:
        secret = current_app.config["SECRET_KEY"]
        if credential.startswith("loom_"):  # an API key: its own (narrower) permissions
            found = api_keys.authenticate_api_key(credential, secret)
            if found is None:
                raise Unauthorized("invalid, expired or revoked API key", code="bad_key")
            user, g.permissions = found
        else:  # a bearer token from POST /auth/login
            user = users_service.user_from_token(credential, secret, current_app.config["TOKEN_TTL_SECONDS"])
            if user is None:
                raise Unauthorized("invalid or expired token", code="bad_token")
        g.via_header = True
    elif current_user.is_authenticated:
        user = current_user._get_current_object()
        g.via_header = False
    g.principal = user
    return user


def require(permission: str | None) -> User | None:
    """Enforce a route's declared permission; None means public."""
    if permission is None:
        return None
    user = current_principal()
    if user is None:
        raise Unauthorized("authentication required: log in or send Authorization: Bearer <token>")
    granted = g.permissions if g.get("permissions") is not None else users_service.permissions_of(user)
    if permission not in granted:
        who = "this API key" if g.get("permissions") is not None else f"your role ({user.role})"
        raise Forbidden(f"{who} lacks the permission {permission}", code="forbidden")
    if request.method not in SAFE_METHODS and not g.get("via_header", False):
        sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
        if not hmac.compare_digest(sent, session.get("csrf", "") or "\x00"):
            raise Forbidden(f"missing or wrong CSRF token (send the {CSRF_HEADER} header)", code="csrf")
    return user


def granted_permissions(user: User) -> frozenset[str]:
    """What this request may do: an API key's grant, else the user's role."""
    return g.permissions if g.get("permissions") is not None else users_service.permissions_of(user)
