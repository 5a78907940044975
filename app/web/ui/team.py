"""Agents (status, current bead, pause/resume), personas (and their editor), projects, providers."""
from __future__ import annotations

from flask import current_app, render_template

from app.services import agents as agent_service
from app.services import overview, workspace
from app.services import personas as persona_service
from app.services import projects as project_service
from app.web.ui.pages import page


@page("/agents", permission="agents:read")
def agents():
    items, total = agent_service.list_agents(limit=500)
    projects, _ = project_service.list_projects(limit=500)
    return render_template("ui/agents.html", agents=[a.to_dict() for a in items], total=total,
                           projects={p.id: p.to_dict() for p in projects},
                           personas=[p.to_dict(full=False) for p in persona_service.list_personas()])


@page("/personas", permission="personas:read")
def personas():
    items = [p.to_dict(full=False) for p in persona_service.list_personas()]
    return render_template("ui/personas.html", personas=items)


@page("/personas/<string(maxlength=64):name>", permission="personas:read")
def persona_editor(name: str):
    persona = persona_service.get_persona(name)  # NotFound: the site's 404 page says which persona
    return render_template("ui/persona_editor.html", persona=persona.to_dict())


@page("/projects", permission="projects:read")
def projects():
    items, total = project_service.list_projects(limit=500)
    data_dir = current_app.config["DATA_DIR"]
    return render_template("ui/projects.html", projects=[p.to_dict() for p in items], total=total,
                           counts=overview.bead_counts_by_project(),
                           branches={p.id: workspace.list_branches(data_dir, p.id, limit=30) for p in items})


@page("/providers", permission="providers:read")
def providers():
    redis_client = current_app.extensions["loom.redis"]()
    return render_template("ui/providers.html", providers=overview.providers_health(current_app.config, redis_client))
