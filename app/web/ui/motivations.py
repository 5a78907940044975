"""The motivations page: proactive triggers, their forms per kind, trigger-now, and the live history."""
from __future__ import annotations

from flask import current_app, render_template

from app.services import motivations as service
from app.services import personas
from app.services import projects as project_service
from app.web.ui.pages import page


@page("/motivations", permission="projects:read")
def motivations():
    items, total = service.list_motivations(limit=500)
    history, history_total = service.list_firings(limit=50)
    projects, _ = project_service.list_projects(limit=500)
    return render_template("ui/motivations.html", motivations=[service.motivation_view(m) for m in items],
                           total=total, history=history, history_total=history_total,
                           projects={p.id: p.name for p in projects},
                           personas=[p.to_dict(full=False) for p in personas.list_personas()],
                           kinds=service.MOTIVATION_KINDS, events=service.EVENT_TYPES, metrics=service.METRICS,
                           ops=service.OPS, min_interval=int(current_app.config["MOTIVATIONS_INTERVAL"]))
