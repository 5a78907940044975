"""The dashboard: projects, agents with live status, bead counts, provider health, Ralph, live activity."""
from __future__ import annotations

from flask import current_app, render_template

from app.services import agents as agent_service
from app.services import bead_graph, overview
from app.services import projects as project_service
from app.web.ui.pages import page

FEED_TYPES = ["bead.created", "bead.closed", "bead.blocked", "bead.claimed", "run.finished", "agent.status_changed",
              "provider.health", "ralph.action", "activity.created", "bead.commented"]


def recent_events(limit: int = 30) -> list[dict]:
    bus = current_app.extensions["loom.bus"]()
    try:
        items = bus.history(after=None, limit=2000, types=FEED_TYPES)
    except Exception:  # noqa: BLE001 (Redis down: the page still renders, the feed says so)
        return []
    return list(reversed(items[-limit:]))


@page("/", permission="projects:read")
def dashboard():
    redis_client = current_app.extensions["loom.redis"]()
    projects, project_total = project_service.list_projects(limit=100)
    agents, agent_total = agent_service.list_agents(limit=200)
    ready, ready_total = bead_graph.ready_beads(limit=10, decisions=False)  # decisions have their own page
    return render_template(
        "ui/dashboard.html", projects=[p.to_dict() for p in projects], project_total=project_total,
        counts=overview.bead_counts(), per_project=overview.bead_counts_by_project(),
        agents=[a.to_dict() for a in agents], agent_total=agent_total, ready=[b.to_dict() for b in ready],
        ready_total=ready_total, providers=overview.providers_health(current_app.config, redis_client),
        ralph=overview.ralph_heartbeat(redis_client), feed=recent_events(),
        ralph_interval=current_app.config["RALPH_INTERVAL"])
