"""The analytics page: LLM usage totals, charts over time, breakdowns, recent requests, export, budgets."""
from __future__ import annotations

from flask import render_template

from app.services import projects as project_service
from app.web.ui.pages import page

RANGES = [("1h", "Last hour"), ("6h", "Last 6 hours"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"),
          ("30d", "Last 30 days")]
GROUPS = [("", "Nothing"), ("project", "Project"), ("agent", "Agent"), ("persona", "Persona"), ("model", "Model")]


@page("/analytics", permission="analytics:read")
def analytics():
    projects, _ = project_service.list_projects(limit=500)
    return render_template("ui/analytics.html", projects=[p.to_dict() for p in projects], ranges=RANGES,
                           groups=GROUPS)
