"""JSON routes for logging in and out and for managing users."""
from __future__ import annotations

from flask import current_app, session
from flask_login import login_user, logout_user

from app.services import users as service
from app.web.api import schemas as s
from app.web.api.routing import bp, paged, route
from app.web.security import csrf_token, current_principal


@route(bp, "/auth/login", methods=("POST",), permission=None, tag="auth", body=s.Login,
       summary="Log in: sets the session cookie and returns a bearer token for scripts")
def login(body: s.Login):
    user = service.authenticate(body.username, body.password)
    session.clear()  # a fresh session on every login: no fixation
    login_user(user)
    token, expires = service.issue_token(user, current_app.config["SECRET_KEY"],
                                         current_app.config["TOKEN_TTL_SECONDS"])
    return {"token": token, "expires_at": expires.isoformat().replace("+00:00", "Z"), "user": user.to_dict(),
            "csrf_token": csrf_token()}


@route(bp, "/auth/logout", methods=("POST",), permission=None, tag="auth", summary="Log out (ends the session)")
def logout():
    logout_user()
    session.clear()
    return {"ok": True}


@route(bp, "/auth/me", permission="system:read", tag="auth", summary="Who am I, with my permissions")
def me():
    user = current_principal()
    return {**user.to_dict(), "permissions": sorted(service.permissions_of(user)), "csrf_token": csrf_token()}


@route(bp, "/users", permission="users:admin", tag="auth", summary="List users", query=s.Page)
def list_users(query: s.Page):
    items, total = service.list_users(query.limit, query.offset)
    return paged([u.to_dict() for u in items], total, query)


@route(bp, "/users", methods=("POST",), permission="users:admin", status=201, tag="auth",
       summary="Create a user", body=s.UserCreate)
def create_user(body: s.UserCreate):
    return service.create_user(body.username, body.password, body.role).to_dict(), 201


@route(bp, "/users/<id:user_id>", methods=("PATCH",), permission="users:admin", tag="auth",
       summary="Change a user's role, active flag or password", body=s.UserUpdate)
def update_user(user_id: int, body: s.UserUpdate):
    return service.update_user(user_id, body.given()).to_dict()
