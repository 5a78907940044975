"""API keys: `loom_<prefix>_<secret>`; only the 8-character prefix and an HMAC of the key are stored."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import ApiKey, User, utcnow
from app.services.errors import NotFound, ValidationError
from app.services.security_log import record_security_event
from app.services.users import ADMIN, READ, WRITE, permissions_of

KEY_RE = re.compile(r"^loom_([0-9a-f]{8})_([A-Za-z0-9_-]{32,64})$")
ALL_PERMISSIONS = frozenset(READ + WRITE + ADMIN)
LAST_USED_EVERY = timedelta(seconds=60)


def _digest(key: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), key.encode(), hashlib.sha256).hexdigest()


def create_api_key(user: User, name: str, permissions: list[str] | None, expires_at: datetime | None,
                   secret_key: str, granted: frozenset[str] | None = None,
                   actor: str | None = None) -> tuple[ApiKey, str]:
    """Create a key holding a subset of what the caller may do: the user's role, or `granted` when the request
    came with an API key (a key never mints a broader one: without `permissions` the new key gets the same
    grant). Returns (row, the key shown once)."""
    name = name.strip()
    if not name:
        raise ValidationError("name must not be empty", "name")
    role = permissions_of(user)
    allowed = role if granted is None else granted & role
    if permissions is None and allowed != role:
        permissions = sorted(allowed)
    if permissions is not None:
        unknown = sorted(set(permissions) - ALL_PERMISSIONS)
        if unknown:
            raise ValidationError(f"unknown permission(s): {', '.join(unknown)}", "permissions")
        beyond = sorted(set(permissions) - allowed)
        if beyond:
            who = f"your role ({user.role})" if allowed == role else "the API key you called with"
            raise ValidationError(f"{who} does not have: {', '.join(beyond)}", "permissions")
        permissions = sorted(set(permissions))
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationError("expires_at must be in the future", "expires_at")
    while True:
        prefix = secrets.token_hex(4)
        if not db.session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.prefix == prefix)):
            break
    key = f"loom_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(user_id=user.id, name=name, prefix=prefix, key_hash=_digest(key, secret_key),
                 permissions=permissions, expires_at=expires_at)
    db.session.add(row)
    db.session.commit()
    record_security_event("apikey.created", username=user.username, actor=actor or user.username,
                          details={"key_id": row.id, "prefix": prefix, "name": name})
    return row, key


def list_api_keys(user_id: int | None, limit: int = 50, offset: int = 0) -> tuple[list[tuple[ApiKey, str]], int]:
    query = select(ApiKey, User.username).join(User, User.id == ApiKey.user_id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.execute(query.order_by(ApiKey.id).limit(limit).offset(offset)).all()
    return [(row[0], row[1]) for row in rows], int(total or 0)


def revoke_api_key(key_id: int, actor: User, granted: frozenset[str] | None = None) -> ApiKey:
    """Revoke one of the actor's keys, or anyone's with users:admin; a request made with an API key (its grant
    `granted`) may revoke only keys whose grant lies within its own."""
    row = db.session.get(ApiKey, key_id)
    role = permissions_of(actor)
    allowed = role if granted is None else granted & role
    within = allowed == role or (row is not None and row.permissions is not None
                                 and set(row.permissions) <= allowed)  # a narrow key revokes only narrower keys
    if row is None or not within or (row.user_id != actor.id and "users:admin" not in allowed):
        raise NotFound(f"API key {key_id} not found", "id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
        owner = db.session.get(User, row.user_id)
        record_security_event("apikey.revoked", username=owner.username if owner else None,
                              actor=actor.username, details={"key_id": row.id, "prefix": row.prefix})
    return row


def authenticate_api_key(key: str, secret_key: str) -> tuple[User, frozenset[str]] | None:
    """The key's user and effective permissions (the key's grant within the user's role), or None."""
    match = KEY_RE.match(key)
    if match is None:
        return None
    row = db.session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if row is None or not hmac.compare_digest(row.key_hash, _digest(key, secret_key)):
        return None
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    granted = permissions_of(user)
    if row.permissions is not None:
        granted = granted & frozenset(row.permissions)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        row.last_used_at = now
        db.session.commit()
    return user, granted
