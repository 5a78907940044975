"""HTML pages: login and the dashboard. Pages read through the same services as the JSON API."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.services import agents as agent_service
from app.services import bead_graph
from app.services import beads as bead_service
from app.services import projects as project_service
from app.services import users as user_service
from app.services.errors import Unauthorized
from app.services.login_limits import LoginLimiter, RateLimited
from app.web.security import csrf_token

bp = Blueprint("ui", __name__)


@bp.app_context_processor
def inject_csrf() -> dict:
    return {"csrf_token": csrf_token}


def _safe_next(target: str | None) -> str:
    if target and urlsplit(target).netloc == "" and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("ui.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        if request.form.get("csrf_token") != session.get("csrf"):
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
                session.clear()
                login_user(user)
                return redirect(_safe_next(request.args.get("next")))
    return render_template("ui/login.html", error=error), 401 if error else 200


@bp.route("/logout", methods=["POST"])
def logout():
    if request.form.get("csrf_token") != session.get("csrf"):  # a cross-site form cannot log people out
        return redirect(url_for("ui.dashboard"))
    logout_user()
    session.clear()
    return redirect(url_for("ui.login"))


@bp.route("/")
@login_required
def dashboard():
    projects, project_total = project_service.list_projects(limit=100)
    counts = {status: bead_service.list_beads(status=status, limit=1)[1]
              for status in ("open", "in_progress", "blocked", "closed")}
    agents, agent_total = agent_service.list_agents(limit=200)
    ready, ready_total = bead_graph.ready_beads(limit=10)
    return render_template("ui/dashboard.html", projects=projects, project_total=project_total, counts=counts,
                           agents=agents, agent_total=agent_total, ready=ready, ready_total=ready_total,
                           user=current_user)
