"""JSON routes for budgets: token and cost limits of a project or a bead, with what was spent."""
from __future__ import annotations

from app.services import budgets
from app.web.api import analytics_schemas as a
from app.web.api import responses as r
from app.web.api.routing import actor_name, bp, route

PROJECT, BEAD = "/projects/<id:project_id>/budget", "/beads/<id:bead_id>/budget"


@route(bp, PROJECT, permission="projects:read", tag="budgets", response=r.Budget,
       summary="A project's budget: limits (null: none), spend in total and today (UTC), in-flight reservations")
def get_project_budget(project_id: int):
    return budgets.budget_view(project_id=project_id)


@route(bp, PROJECT, methods=("PUT",), permission="projects:write", tag="budgets", body=a.BudgetSet,
       response=r.Budget, summary="Set a project's limits (null clears one; fields left out stay)")
def put_project_budget(project_id: int, body: a.BudgetSet):
    return budgets.set_budget(body.given(), project_id=project_id, actor=actor_name())


@route(bp, BEAD, permission="beads:read", tag="budgets", response=r.Budget,
       summary="A bead's own budget (checked together with its project's)")
def get_bead_budget(bead_id: int):
    return budgets.budget_view(bead_id=bead_id)


@route(bp, BEAD, methods=("PUT",), permission="projects:write", tag="budgets", body=a.BudgetSet,
       response=r.Budget, summary="Set a bead's limits (null clears one; fields left out stay)")
def put_bead_budget(bead_id: int, body: a.BudgetSet):
    return budgets.set_budget(body.given(), bead_id=bead_id, actor=actor_name())
