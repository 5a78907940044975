"""JSON routes for projects."""
from __future__ import annotations

from flask import current_app

from app.services import projects as service
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import bp, paged, route
from app.web.security import current_principal, granted_permissions


def _runs_the_installation() -> bool:
    """An admin (projects:admin) may point a project at a local repository or one inside the network."""
    return "projects:admin" in granted_permissions(current_principal())


@route(bp, "/projects", permission="projects:read", summary="List projects", tag="projects", query=s.Page,
       response=r.page_of(r.Project))
def list_projects(query: s.Page):
    items, total = service.list_projects(query.limit, query.offset)
    return paged([p.to_dict() for p in items], total, query)


@route(bp, "/projects", methods=("POST",), permission="projects:write", status=201, tag="projects",
       summary="Create a project (and its default team of agents)", body=s.ProjectCreate, response=r.Project)
def create_project(body: s.ProjectCreate):
    team = [name.strip() for name in current_app.config["DEFAULT_TEAM"].split(",") if name.strip()]
    project = service.create_project(**body.model_dump(), team=team, trusted=_runs_the_installation())
    return project.to_dict(), 201


@route(bp, "/projects/<id:project_id>", permission="projects:read", summary="Get a project", tag="projects",
       response=r.Project)
def get_project(project_id: int):
    return service.get_project(project_id).to_dict()


@route(bp, "/projects/<id:project_id>", methods=("PATCH",), permission="projects:write", tag="projects",
       summary="Update a project", body=s.ProjectUpdate, response=r.Project)
def update_project(project_id: int, body: s.ProjectUpdate):
    return service.update_project(project_id, body.given(), trusted=_runs_the_installation()).to_dict()


@route(bp, "/projects/<id:project_id>", methods=("DELETE",), permission="projects:admin", status=204,
       tag="projects", summary="Delete a project with its beads and agents")
def delete_project(project_id: int):
    service.delete_project(project_id, current_app.config["DATA_DIR"])
    return "", 204
