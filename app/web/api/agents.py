"""JSON routes for agents and personas."""
from __future__ import annotations

from app.services import agents as service
from app.services import personas as persona_service
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import bp, paged, route

ONE = "/agents/<id:agent_id>"


@route(bp, "/agents", permission="agents:read", summary="List agents", tag="agents", query=s.AgentFilters,
       response=r.page_of(r.Agent))
def list_agents(query: s.AgentFilters):
    items, total = service.list_agents(project_id=query.project_id, status=query.status, persona=query.persona,
                                       limit=query.limit, offset=query.offset)
    return paged([a.to_dict() for a in items], total, query)


@route(bp, "/agents", methods=("POST",), permission="agents:write", status=201, tag="agents",
       summary="Create an agent with a persona", body=s.AgentCreate, response=r.Agent)
def create_agent(body: s.AgentCreate):
    agent = service.create_agent(body.name, body.persona, project_id=body.project_id, role=body.role)
    return agent.to_dict(), 201


@route(bp, ONE, permission="agents:read", summary="Get an agent", tag="agents", response=r.Agent)
def get_agent(agent_id: int):
    return service.get_agent(agent_id).to_dict()


@route(bp, ONE, methods=("PATCH",), permission="agents:write", summary="Update an agent", tag="agents",
       body=s.AgentUpdate, response=r.Agent)
def update_agent(agent_id: int, body: s.AgentUpdate):
    return service.update_agent(agent_id, body.given()).to_dict()


@route(bp, ONE, methods=("DELETE",), permission="agents:write", status=204, tag="agents",
       summary="Delete an agent (refused while it works on a bead)")
def delete_agent(agent_id: int):
    service.delete_agent(agent_id)
    return "", 204


@route(bp, ONE + "/pause", methods=("POST",), permission="agents:write", summary="Pause an agent", tag="agents",
       response=r.Agent)
def pause_agent(agent_id: int):
    return service.pause_agent(agent_id).to_dict()


@route(bp, ONE + "/resume", methods=("POST",), permission="agents:write", summary="Resume a paused agent",
       tag="agents", response=r.Agent)
def resume_agent(agent_id: int):
    return service.resume_agent(agent_id).to_dict()


@route(bp, "/personas", permission="personas:read", summary="List personas, by name", tag="personas", query=s.Page,
       response=r.page_of(r.PersonaSummary))
def list_personas(query: s.Page):
    items, total = persona_service.page_personas(limit=query.limit, offset=query.offset)
    return paged([p.to_dict(full=False) for p in items], total, query)


@route(bp, "/personas/<string(maxlength=64):name>", permission="personas:read", summary="Get a persona",
       tag="personas", response=r.Persona)
def get_persona(name: str):
    return persona_service.get_persona(name).to_dict()


@route(bp, "/personas/<string(maxlength=64):name>", methods=("PUT",), permission="personas:write",
       summary="Create or edit a persona", tag="personas", body=s.PersonaPut, response=r.Persona, other_statuses=(201,))
def put_persona(name: str, body: s.PersonaPut):
    persona, created = persona_service.put_persona(name, body.given())
    return persona.to_dict(), 201 if created else 200
