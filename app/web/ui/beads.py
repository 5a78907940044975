"""The beads board (Open / In progress / Blocked / Closed, filterable) and a bead's detail page."""
from __future__ import annotations

from flask import render_template, request

from app.models import BEAD_STATUSES, BEAD_TYPES
from app.services import agents as agent_service
from app.services import bead_comments, bead_graph, runs
from app.services import beads as bead_service
from app.services import projects as project_service
from app.web.ui.pages import page

COLUMN_LIMIT = 200


def _int_arg(name: str, low: int = 1, high: int = 2_147_483_647) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and low <= int(raw) <= high else None


def board_filters() -> dict:
    """The board's filters from the query string; malformed values are ignored rather than fatal."""
    kind = request.args.get("type")
    tag = (request.args.get("tag") or "").strip()[:50] or None
    return {"project_id": _int_arg("project_id"), "priority": _int_arg("priority", 0, 3),
            "type": kind if kind in BEAD_TYPES else None, "tag": tag, "assigned_to": _int_arg("assigned_to")}


@page("/beads", permission="beads:read")
def beads_board():
    filters = board_filters()
    columns, totals = {}, {}
    for status in BEAD_STATUSES:
        items, totals[status] = bead_service.list_beads(status=status, limit=COLUMN_LIMIT, **filters)
        columns[status] = bead_service.beads_view(items)
    projects, _ = project_service.list_projects(limit=500)
    agents, _ = agent_service.list_agents(limit=1000)
    shown = [a.to_dict() for a in agents if filters["project_id"] in (None, a.project_id)]
    return render_template("ui/beads_board.html", columns=columns, totals=totals, filters=filters,
                           projects=[p.to_dict() for p in projects], agents=shown,
                           agent_names={a.id: a.name for a in agents}, types=BEAD_TYPES, column_limit=COLUMN_LIMIT)


@page("/beads/<int:bead_id>", permission="beads:read")
def bead_detail(bead_id: int):
    bead = bead_service.get_bead(bead_id)  # NotFound: the site's 404 page says which bead
    view = bead_service.bead_view(bead)
    steps, step_total = runs.list_steps(bead_id, limit=500)
    run_items, _ = runs.list_runs(bead_id, limit=100)
    comments, _ = bead_comments.list_comments(bead_id, limit=500)
    project = project_service.get_project(bead.project_id)
    agents, _ = agent_service.list_agents(project_id=bead.project_id, limit=500)
    return render_template("ui/bead_detail.html", bead=view, project=project.to_dict(),
                           steps=[s.to_dict() for s in steps], step_total=step_total,
                           runs=[r.to_dict() for r in run_items], comments=[c.to_dict() for c in comments],
                           graph=bead_graph.dependency_tree(bead_id), agents={a.id: a.to_dict() for a in agents})
