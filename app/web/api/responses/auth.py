"""Answers of the auth routes: users, login, API keys, security events."""
from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.web.api.responses.base import Id, Json, Response
from app.web.api.schemas import Role


class User(Response):
    id: Id
    username: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class LoginAnswer(Response):
    token: str
    expires_at: datetime
    user: User
    csrf_token: str


class Me(User):
    permissions: list[str]
    csrf_token: str


class ApiKey(Response):
    id: Id
    user_id: Id
    user: str | None
    name: str
    prefix: str
    permissions: list[str] | None = Field(description="null: all of the owner's permissions")
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="the whole key; shown only in this answer")


class SecurityEvent(Response):
    id: Id
    ts: datetime
    type: str
    username: str | None
    actor: str | None
    ip: str | None
    details: Json


