"""JSON routes for logging in and out and for managing users."""
from __future__ import annotations

from flask import current_app, request
from flask_login import login_user

from app.services import api_keys, security_log
from app.services import users as service
from app.services.errors import Forbidden
from app.services.login_limits import LoginLimiter
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import actor_name, bp, paged, route
from app.web.security import csrf_token, current_principal, granted_permissions, log_in, log_out


def login_limiter() -> LoginLimiter:
    return LoginLimiter(current_app.extensions["loom.redis"]())


@route(bp, "/auth/login", methods=("POST",), permission=None, tag="auth", body=s.Login,
       summary="Log in: sets the session cookie and returns a bearer token for scripts", response=r.LoginAnswer)
def login(body: s.Login):
    user = service.authenticate(body.username, body.password, login_limiter(), request.remote_addr)
    sid = log_in(user)  # a fresh session on every login: no fixation
    token, expires = service.issue_token(user, current_app.config["SECRET_KEY"],
                                         current_app.config["TOKEN_TTL_SECONDS"], sid)
    return {"token": token, "expires_at": expires.isoformat().replace("+00:00", "Z"), "user": user.to_dict(),
            "csrf_token": csrf_token()}


@route(bp, "/auth/logout", methods=("POST",), permission=None, tag="auth", summary="Log out (ends the session)",
       response=r.Ok)
def logout():
    log_out()  # this login's cookie and its token stop working, here and wherever they were copied
    return {"ok": True}


@route(bp, "/auth/me", permission="system:read", tag="auth", summary="Who am I, with my permissions", response=r.Me)
def me():
    user = current_principal()
    return {**user.to_dict(), "permissions": sorted(granted_permissions(user)), "csrf_token": csrf_token()}


@route(bp, "/auth/password", methods=("POST",), permission="system:read", tag="auth", body=s.PasswordChange,
       summary="Change my password (ends my other sessions and tokens)", response=r.Ok)
def change_password(body: s.PasswordChange):
    user = service.change_own_password(current_principal(), body.current_password, body.new_password,
                                       login_limiter(), request.remote_addr)
    login_user(user)  # keep this session; the others end with the old auth version
    return {"ok": True}


@route(bp, "/auth/api-keys", permission="system:read", tag="auth", query=s.KeyFilters,
       summary="My API keys (admins: everyone's with all=true); never the keys themselves",
       response=r.page_of(r.ApiKey))
def list_api_keys(query: s.KeyFilters):
    user = current_principal()
    everyone = query.all and "users:admin" in granted_permissions(user)
    items, total = api_keys.list_api_keys(None if everyone else user.id, query.limit, query.offset)
    return paged([row.to_dict(username) for row, username in items], total, query)


@route(bp, "/auth/api-keys", methods=("POST",), permission="system:read", status=201, tag="auth",
       body=s.ApiKeyCreate, summary="Create an API key with some of my permissions; the key is shown only here",
       response=r.ApiKeyCreated)
def create_api_key(body: s.ApiKeyCreate):
    caller = current_principal()
    owner, granted = caller, granted_permissions(caller)
    if body.user_id is not None and body.user_id != caller.id:  # a key for a service account, say
        if "users:admin" not in granted:
            raise Forbidden("only admins create API keys for other users", "user_id", code="forbidden")
        owner, granted = service.get_user(body.user_id), None  # within the owner's role
    row, key = api_keys.create_api_key(owner, body.name, body.permissions, body.expires_at,
                                       current_app.config["SECRET_KEY"], granted, actor=caller.username)
    return {**row.to_dict(owner.username), "key": key}, 201


@route(bp, "/auth/api-keys/<id:key_id>", methods=("DELETE",), permission="system:read", status=204,
       tag="auth", summary="Revoke an API key (mine; admins: anyone's)")
def revoke_api_key(key_id: int):
    user = current_principal()
    api_keys.revoke_api_key(key_id, user, granted_permissions(user))
    return "", 204


@route(bp, "/security/events", permission="system:admin", tag="auth", query=s.SecurityEventFilters,
       summary="Security events: logins, keys, role changes (newest first)", response=r.page_of(r.SecurityEvent))
def list_security_events(query: s.SecurityEventFilters):
    items, total = security_log.list_security_events(type=query.type, username=query.username,
                                                     limit=query.limit, offset=query.offset)
    return paged([e.to_dict() for e in items], total, query)


@route(bp, "/users", permission="users:admin", tag="auth", summary="List users", query=s.Page,
       response=r.page_of(r.User))
def list_users(query: s.Page):
    items, total = service.list_users(query.limit, query.offset)
    return paged([u.to_dict() for u in items], total, query)


@route(bp, "/users", methods=("POST",), permission="users:admin", status=201, tag="auth",
       summary="Create a user", body=s.UserCreate, response=r.User)
def create_user(body: s.UserCreate):
    return service.create_user(body.username, body.password, body.role, actor=actor_name()).to_dict(), 201


@route(bp, "/users/<id:user_id>", methods=("PATCH",), permission="users:admin", tag="auth",
       summary="Change a user's role, active flag or password", body=s.UserUpdate, response=r.User)
def update_user(user_id: int, body: s.UserUpdate):
    return service.update_user(user_id, body.given(), actor=actor_name()).to_dict()
