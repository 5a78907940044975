"""Users, roles and permissions; password hashing; the first admin; signed bearer tokens."""
from __future__ import annotations

import re
import secrets
from functools import lru_cache
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models import ROLES, User, utcnow
from app.services.errors import Conflict, NotFound, Unauthorized, ValidationError
from app.services.login_limits import LoginLimiter
from app.services.security_log import record_security_event

# resource:action permissions. Every route declares one of these (app/web/api/routing.py).
READ = ["projects:read", "beads:read", "agents:read", "personas:read", "providers:read", "decisions:read",
        "analytics:read", "activity:read", "notifications:own", "logs:read", "events:read", "system:read"]
WRITE = ["projects:write", "beads:write", "agents:write", "personas:write", "decisions:write", "pair:use"]
ADMIN = ["projects:admin", "providers:write", "users:admin", "system:admin"]
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(READ + WRITE + ADMIN),
    "user": frozenset(READ + WRITE),
    "viewer": frozenset(READ),
    "service": frozenset(READ + WRITE),
}
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
_TOKEN_SALT = "loom.bearer"


def permissions_of(user: User) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(user.role, frozenset())


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def _check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"password must be at least {MIN_PASSWORD} characters", "password")


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found", "id")
    return user


def create_user(username: str, password: str, role: str = "user", actor: str | None = None) -> User:
    if not USERNAME_RE.match(username or ""):
        raise ValidationError("username: 1-64 letters, digits and _.@-", "username")
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", "role")
    _check_password_rules(password)
    if db.session.scalar(select(func.count()).select_from(User).where(func.lower(User.username) == username.lower())):
        raise Conflict(f"user {username!r} already exists", "username", code="exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    db.session.add(user)
    db.session.commit()
    record_security_event("user.created", username=username, actor=actor, details={"role": role})
    return user


def list_users(limit: int = 50, offset: int = 0) -> tuple[list[User], int]:
    total = db.session.scalar(select(func.count()).select_from(User))
    items = db.session.scalars(select(User).order_by(User.id).limit(limit).offset(offset)).all()
    return list(items), int(total or 0)


def update_user(user_id: int, changes: dict, actor: str | None = None) -> User:
    """Role, active flag, password; a disable or a new password ends every session and token."""
    user = get_user(user_id)
    was_admin = user.role == "admin" and user.active
    events: list[tuple[str, dict]] = []
    if changes.get("role") is not None and changes["role"] != user.role:
        if changes["role"] not in ROLES:
            raise ValidationError(f"role must be one of {', '.join(ROLES)}", "role")
        events.append(("user.role_changed", {"from": user.role, "to": changes["role"]}))
        user.role = changes["role"]
    if changes.get("is_active") is not None and bool(changes["is_active"]) != user.active:
        user.active = bool(changes["is_active"])
        user.auth_version += 1
        events.append(("user.enabled" if user.active else "user.disabled", {}))
    if changes.get("password") is not None:
        _check_password_rules(changes["password"])
        user.password_hash = hash_password(changes["password"])
        user.auth_version += 1
        events.append(("user.password_changed", {}))
    if was_admin and not (user.role == "admin" and user.active) and not _an_active_admin_remains():
        db.session.rollback()
        field = "is_active" if changes.get("is_active") is False else "role"
        raise Conflict(f"{user.username} is the last active admin: make another user admin first", field,
                       code="last_admin")
    db.session.commit()
    for kind, details in events:
        record_security_event(kind, username=user.username, actor=actor, details=details)
    return user


def _an_active_admin_remains() -> bool:
    """Someone can still manage users (the pending change included): else nobody could undo it."""
    db.session.flush()
    return bool(db.session.scalar(select(func.count()).select_from(User).where(User.role == "admin",
                                                                               User.active.is_(True))))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")


def authenticate(username: str, password: str, limiter: LoginLimiter | None = None,
                 address: str | None = None) -> User:
    """Check a password (rate-limited per user and address); every outcome is a security event."""
    if limiter is not None:
        limiter.check(username, address)
    user = db.session.scalar(select(User).where(User.username == username))
    # Check a hash even for unknown users so timing does not reveal which usernames exist.
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password)
    if not ok or user is None or not user.is_active or user.role == "service":
        if limiter is not None:
            limiter.failed(username, address)
        reason = "service accounts use API keys" if ok and user is not None and user.role == "service" else None
        record_security_event("login.failed", username=username[:64], details={"reason": reason} if reason else {})
        raise Unauthorized("wrong username or password", "password", code="bad_credentials")
    if limiter is not None:
        limiter.succeeded(username)
    user.last_login_at = utcnow()
    db.session.commit()
    record_security_event("login.ok", username=user.username, actor=user.username)
    return user


def change_own_password(user: User, current: str, new: str, limiter: LoginLimiter | None = None,
                        address: str | None = None) -> User:
    """The current password is checked under the login's rate limit (a stolen session or key cannot guess it)."""
    if limiter is not None:
        limiter.check(user.username, address)
    if not check_password_hash(user.password_hash, current):
        if limiter is not None:
            limiter.failed(user.username, address)
        raise Unauthorized("the current password is wrong", "current_password", code="bad_credentials")
    return update_user(user.id, {"password": new}, actor=user.username)


def ensure_admin(password: str | None) -> str | None:
    """Create the first admin when there are no users. Returns a generated password, if one was made."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    db.session.add(User(username="admin", password_hash=hash_password(password), role="admin"))
    db.session.commit()
    return generated


def issue_token(user: User, secret_key: str, ttl_seconds: int, sid: str | None = None) -> tuple[str, datetime]:
    """A bearer token for scripts; `sid`: the login session it belongs to (logging that out ends it too)."""
    data = {"uid": user.id, "v": user.auth_version, **({"sid": sid} if sid else {})}
    token = URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).dumps(data)
    return token, datetime.now(UTC) + timedelta(seconds=ttl_seconds)


def token_sid(token: str, secret_key: str, ttl_seconds: int) -> str | None:
    """The login session a valid token belongs to (None: not valid, or made before tokens carried one)."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).loads(token, max_age=ttl_seconds)
    except (BadSignature, SignatureExpired):
        return None
    return data.get("sid") if isinstance(data, dict) and isinstance(data.get("sid"), str) else None


def user_from_token(token: str, secret_key: str, ttl_seconds: int) -> User | None:
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).loads(token, max_age=ttl_seconds)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict):
        return None
    user = db.session.get(User, data.get("uid")) if isinstance(data.get("uid"), int) else None
    if user is None or not user.is_active or user.auth_version != data.get("v"):
        return None
    return user
