"""JSON routes around the engine: a bead's step timeline and runs, redispatch, decisions."""
from __future__ import annotations

from app.services import beads as bead_service
from app.services import decisions, runs
from app.services.errors import Conflict
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import actor_name, bp, paged, route
from workers.dispatch import request_dispatch

ONE = "/beads/<id:bead_id>"


@route(bp, ONE + "/steps", permission="beads:read", tag="beads", query=s.Page,
       summary="The action-loop timeline: every LLM turn with its actions and results", response=r.page_of(r.Step))
def list_steps(bead_id: int, query: s.Page):
    items, total = runs.list_steps(bead_id, query.limit, query.offset)
    return paged([step.to_dict() for step in items], total, query)


@route(bp, ONE + "/runs", permission="beads:read", tag="beads", query=s.Page, summary="A bead's runs",
       response=r.page_of(r.Run))
def list_runs(bead_id: int, query: s.Page):
    items, total = runs.list_runs(bead_id, query.limit, query.offset)
    return paged([run.to_dict() for run in items], total, query)


@route(bp, ONE + "/redispatch", methods=("POST",), permission="beads:write", tag="beads", body=s.Reason,
       summary="Put a bead back in the queue now (releases an in-progress or blocked bead)", response=r.Bead)
def redispatch(bead_id: int, body: s.Reason):
    bead = bead_service.get_bead(bead_id)
    if bead.status == "closed":
        raise Conflict(f"bead {bead_id} is closed; reopen it first (PATCH status=open)", "status")
    if bead.type == "decision":
        raise Conflict(f"bead {bead_id} is a decision: a person decides it (POST /decisions/{bead_id}/decide), "
                       "no agent runs it", "id", code="not_dispatchable")
    if bead.status != "open":
        bead = bead_service.reopen_bead(bead_id, body.reason or "redispatched", actor=actor_name())
    request_dispatch()
    return bead_service.bead_view(bead)


@route(bp, "/decisions", permission="decisions:read", tag="decisions", query=s.DecisionFilters,
       summary="Decisions waiting for a person (status=closed for decided ones)", response=r.page_of(r.Bead))
def list_decisions(query: s.DecisionFilters):
    items, total = decisions.list_decisions(status=query.status, project_id=query.project_id,
                                            limit=query.limit, offset=query.offset)
    return paged(bead_service.beads_view(items), total, query)


@route(bp, "/decisions/<id:decision_id>/decide", methods=("POST",), permission="decisions:write",
       tag="decisions", body=s.Decide, summary="Decide: closes the decision and unblocks the bead that asked",
       response=r.Bead)
def decide(decision_id: int, body: s.Decide):
    bead = decisions.decide(decision_id, body.decision, body.rationale, actor_name())
    return bead_service.bead_view(bead)


@route(bp, ONE + "/escalate", methods=("POST",), permission="beads:write", status=201, tag="decisions",
       body=s.Escalate, summary="Ask a person to decide: creates a decision bead and blocks this bead on it",
       response=r.Bead)
def escalate(bead_id: int, body: s.Escalate):
    bead = bead_service.get_bead(bead_id)
    if bead.status == "closed":
        raise Conflict(f"bead {bead_id} is closed; reopen it first", "status")
    if bead.type == "decision":
        raise Conflict("a decision bead cannot be escalated; decide it instead", "type")
    decision = decisions.escalate(bead_id, body.reason, question=body.question, options=body.options,
                                  actor=actor_name())
    return bead_service.bead_view(decision), 201
