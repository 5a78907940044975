"""Who is calling: a bearer token / API key header, or a flask-login session (with CSRF for writes)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from flask import current_app, g, request, session
from flask_login import current_user, login_user, logout_user

from app.extensions import db
from app.models import User
from app.services import api_keys, sessions
from app.services import users as users_service
from app.services.errors import Forbidden, Unauthorized

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RECENT: dict[tuple, tuple[float, str | None]] = {}  # stream_check answers by login, shared by its streams
_RECENT_LOCK = threading.Lock()
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
            ttl = current_app.config["TOKEN_TTL_SECONDS"]
            user = users_service.user_from_token(credential, secret, ttl)
            if user is None or sessions.ended(_redis(), users_service.token_sid(credential, secret, ttl)):
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


def _redis():
    return current_app.extensions["loom.redis"]()


def _ended_ttl_s() -> int:
    """How long a logged-out login must stay refused: as long as its cookie or its token could be presented."""
    return int(max(current_app.permanent_session_lifetime.total_seconds(), current_app.config["TOKEN_TTL_SECONDS"]))


def log_in(user: User) -> str:
    """A fresh session (no fixation) for the user, with its own session id; returns the id (for its token)."""
    session.clear()
    login_user(user)
    session["sid"] = sessions.new_sid()
    return session["sid"]


def log_out() -> None:
    """End this login server-side (its cookie and its bearer token are refused from now on), then locally."""
    credential = _header_credential()
    if credential is not None and not credential.startswith("loom_"):
        secret, ttl = current_app.config["SECRET_KEY"], current_app.config["TOKEN_TTL_SECONDS"]
        sessions.end(_redis(), users_service.token_sid(credential, secret, ttl), _ended_ttl_s())
    sessions.end(_redis(), session.get("sid"), _ended_ttl_s())
    logout_user()
    session.clear()


def session_ended() -> bool:
    """The session cookie of this request belongs to a login that was logged out."""
    return sessions.ended(_redis(), session.get("sid"))


def stream_check(permission: str) -> Callable[[], str | None]:
    """For a stream that stays open long after its handshake: a callable that re-checks this request's credential
    (None while it holds, else why not): the user disabled, their password or role changed, the API key revoked
    or expired, the token expired, the session logged out. It may be called outside any context (an SSE
    generator); it uses the database briefly and gives the connection back."""
    user = current_principal()
    user_id, version = user.id, user.auth_version
    credential, sid = _header_credential(), session.get("sid")
    secret, ttl, client = current_app.config["SECRET_KEY"], current_app.config["TOKEN_TTL_SECONDS"], _redis()
    app = current_app._get_current_object()
    fresh_for = float(current_app.config["STREAM_RECHECK_SECONDS"])
    # Streams of the same login share one answer for an interval: 200 dashboards of one user cost the database
    # one check per interval, not 200 (the answer is at most one interval older than the stream's own check).
    key = (permission, hashlib.sha256(credential.encode()).hexdigest() if credential else None, user_id, version, sid)

    def check() -> str | None:
        now = time.monotonic()
        with _RECENT_LOCK:
            recent = _RECENT.get(key)
        if recent is not None and now - recent[0] < fresh_for:
            return recent[1]
        with app.app_context():
            answer = _recheck()
        with _RECENT_LOCK:
            if len(_RECENT) > 10_000:  # logins come and go: forget them all now and then
                _RECENT.clear()
            _RECENT[key] = (now, answer)
        return answer

    def _recheck() -> str | None:
        try:
            if credential is not None and credential.startswith("loom_"):
                found = api_keys.authenticate_api_key(credential, secret)
                if found is None:
                    return "the API key was revoked or expired, or its user disabled"
                granted = found[1]
            elif credential is not None:
                fresh = users_service.user_from_token(credential, secret, ttl)
                if fresh is None or sessions.ended(client, users_service.token_sid(credential, secret, ttl)):
                    return "the token expired or was logged out"
                granted = users_service.permissions_of(fresh)
            else:
                fresh = db.session.get(User, user_id, populate_existing=True)
                if fresh is None or not fresh.is_active or fresh.auth_version != version:
                    return "the account was disabled or its password changed"
                if sessions.ended(client, sid):
                    return "logged out"
                granted = users_service.permissions_of(fresh)
            return None if permission in granted else f"no longer has the permission {permission}"
        finally:
            db.session.remove()
    return check
