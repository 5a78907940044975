"""Login, logout and the account page (change password, my API keys)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user

from app.services import api_keys
from app.services import users as user_service
from app.services.errors import ServiceError, Unauthorized
from app.services.login_limits import LoginLimiter, RateLimited
from app.web.security import log_in, log_out
from app.web.ui.pages import page


def _safe_next(target: str | None) -> str:
    if target and urlsplit(target).netloc == "" and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("ui.dashboard")


def _form_token_ok() -> bool:
    sent = request.form.get("csrf_token") or ""
    return bool(sent) and sent == session.get("csrf")


@page("/login", permission=None, methods=("GET", "POST"))
def login():
    error = None
    if request.method == "POST":
        if not _form_token_ok():
            error = "Your form expired; please try again."
        else:
            try:
                limiter = LoginLimiter(current_app.extensions["loom.redis"]())
                user = user_service.authenticate(request.form.get("username", "")[:64],
                                                 request.form.get("password", "")[:1024], limiter,
                                                 request.remote_addr)
            except Unauthorized:
                error = "Wrong username or password."
            except RateLimited as exc:
                error = exc.message[:1].upper() + exc.message[1:] + "."
            else:
                log_in(user)  # a fresh session on every login: no fixation
                return redirect(_safe_next(request.args.get("next")))
    elif current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    return render_template("ui/login.html", error=error), 401 if error else 200


@page("/logout", permission=None, methods=("POST",))
def logout():
    if not _form_token_ok():  # a cross-site form cannot log people out
        return redirect(url_for("ui.dashboard"))
    log_out()
    return redirect(url_for("ui.login"))


@page("/account", permission="system:read", methods=("GET", "POST"))
def account():
    message, error = None, None
    if request.method == "POST":
        if not _form_token_ok():
            error = "Your form expired; please try again."
        elif request.form.get("new_password", "") != request.form.get("confirm_password", ""):
            error = "The new passwords do not match."
        else:
            try:
                user = user_service.change_own_password(current_user._get_current_object(),
                                                        request.form.get("current_password", "")[:1024],
                                                        request.form.get("new_password", "")[:1024],
                                                        LoginLimiter(current_app.extensions["loom.redis"]()),
                                                        request.remote_addr)
            except ServiceError as exc:
                error = exc.message[:1].upper() + exc.message[1:] + "."
            else:
                login_user(user)  # this session stays; every other session and token ends
                message = "Password changed. Your other sessions and tokens have been signed out."
    keys, _ = api_keys.list_api_keys(current_user.id, limit=100)
    return render_template("ui/account.html", message=message, error=error, keys=[k.to_dict(u) for k, u in keys],
                           permissions=sorted(user_service.permissions_of(current_user))), 400 if error else 200
