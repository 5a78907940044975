"""JSON routes for beads: CRUD, the dependency graph, readiness, claims, status changes, comments."""
from __future__ import annotations

from flask import current_app

from app.services import bead_comments, bead_graph
from app.services import beads as service
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import actor_name, bp, paged, route

ONE = "/beads/<id:bead_id>"


@route(bp, "/beads", permission="beads:read", summary="List beads (filterable)", tag="beads", query=s.BeadFilters,
       response=r.page_of(r.Bead))
def list_beads(query: s.BeadFilters):
    filters = query.model_dump(exclude={"limit", "offset"})
    items, total = service.list_beads(**filters, limit=query.limit, offset=query.offset)
    return paged(service.beads_view(items), total, query)


@route(bp, "/beads", methods=("POST",), permission="beads:write", status=201, tag="beads",
       summary="Create a bead", body=s.BeadCreate, response=r.Bead)
def create_bead(body: s.BeadCreate):
    fields = body.model_dump(exclude={"project_id", "title"})
    bead = service.create_bead(body.project_id, body.title, created_by=actor_name(), **fields)
    return service.bead_view(bead), 201


@route(bp, "/beads/ready", permission="beads:read", tag="beads", query=s.ReadyFilters,
       summary="Ready beads: open with every blocker closed, P0 first then oldest", response=r.page_of(r.Bead))
def ready_beads(query: s.ReadyFilters):
    items, total = bead_graph.ready_beads(query.project_id, query.limit, query.offset)
    return paged(service.beads_view(items), total, query)


@route(bp, ONE, permission="beads:read", summary="Get a bead with its dependencies", tag="beads", response=r.Bead)
def get_bead(bead_id: int):
    return service.bead_view(service.get_bead(bead_id))


@route(bp, ONE, methods=("PATCH",), permission="beads:write", summary="Update a bead", tag="beads",
       body=s.BeadUpdate, response=r.Bead)
def update_bead(bead_id: int, body: s.BeadUpdate):
    return service.bead_view(service.update_bead(bead_id, body.given()))


@route(bp, ONE, methods=("DELETE",), permission="beads:write", status=204, tag="beads", query=s.DeleteOptions,
       summary="Delete a bead (refused while others depend on it, unless force=true)")
def delete_bead(bead_id: int, query: s.DeleteOptions):
    service.delete_bead(bead_id, force=query.force, data_dir=current_app.config["DATA_DIR"])
    return "", 204


@route(bp, ONE + "/dependencies", methods=("POST",), permission="beads:write", status=201, tag="beads",
       summary="Add blockers: this bead is blocked by the given bead(s); cycles get 409", body=s.Dependency,
       response=r.Bead)
def add_dependency(bead_id: int, body: s.Dependency):
    blockers = body.blocked_by if isinstance(body.blocked_by, list) else [body.blocked_by]
    bead_graph.add_dependencies(bead_id, blockers)
    return service.bead_view(service.get_bead(bead_id)), 201


@route(bp, ONE + "/dependencies/<id:other>", methods=("DELETE",), permission="beads:write", tag="beads",
       summary="Remove a blocker from this bead", response=r.Bead)
def remove_dependency(bead_id: int, other: int):
    bead_graph.remove_dependency(bead_id, other)
    return service.bead_view(service.get_bead(bead_id))


@route(bp, ONE + "/claim", methods=("POST",), permission="beads:write", tag="beads", body=s.Claim,
       summary="Atomically claim a ready bead for an idle agent (409 for every loser)", response=r.Bead)
def claim_bead(bead_id: int, body: s.Claim):
    bead = bead_graph.claim_bead(bead_id, body.agent_id, current_app.config["LEASE_SECONDS"])
    return service.bead_view(bead)


@route(bp, ONE + "/unblock", methods=("POST",), permission="beads:write", tag="beads", body=s.Reason,
       summary="Unblock a blocked bead (back to open)", response=r.Bead)
def unblock_bead(bead_id: int, body: s.Reason):
    return service.bead_view(service.unblock_bead(bead_id, body.reason, actor=actor_name()))


@route(bp, ONE + "/close", methods=("POST",), permission="beads:write", tag="beads", body=s.Reason,
       summary="Close a bead; its dependants become ready when their other blockers are closed", response=r.Bead)
def close_bead(bead_id: int, body: s.Reason):
    return service.bead_view(service.close_bead(bead_id, body.reason, actor=actor_name()))


@route(bp, ONE + "/comments", permission="beads:read", summary="List a bead's comments", tag="beads",
       query=s.Page, response=r.page_of(r.Comment))
def list_comments(bead_id: int, query: s.Page):
    items, total = bead_comments.list_comments(bead_id, query.limit, query.offset)
    return paged([c.to_dict() for c in items], total, query)


@route(bp, ONE + "/comments", methods=("POST",), permission="beads:write", status=201, tag="beads",
       summary="Comment on a bead", body=s.CommentCreate, response=r.Comment)
def add_comment(bead_id: int, body: s.CommentCreate):
    return bead_comments.add_comment(bead_id, body.author or actor_name(), body.text).to_dict(), 201
