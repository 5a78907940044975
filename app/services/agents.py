"""Agents: create, list, update, pause/resume, delete."""
from __future__ import annotations

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import AGENT_STATUSES, Agent, Persona, utcnow
from app.services.errors import Conflict, NotFound, ValidationError
from app.services.events import emit
from app.services.projects import get_project
from app.services import paging


def get_agent(agent_id: int) -> Agent:
    agent = db.session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", "id")
    return agent


def _persona(name: str | None) -> Persona:
    if name is None:  # PATCH {"persona": null}; session.get(Persona, None) is not a lookup (a warning, later an error)
        raise ValidationError("persona must name a persona (GET /api/v1/personas lists them)", "persona")
    persona = db.session.get(Persona, name)
    if persona is None:
        raise ValidationError(f"unknown persona {name!r} (GET /api/v1/personas lists them)", "persona")
    return persona


def _check_unique(name: str, project_id: int | None, except_id: int | None = None) -> None:
    query = select(func.count()).select_from(Agent).where(Agent.name == name)
    query = query.where(Agent.project_id.is_(None) if project_id is None else Agent.project_id == project_id)
    if except_id is not None:
        query = query.where(Agent.id != except_id)
    if db.session.scalar(query):
        raise Conflict(f"an agent named {name!r} already exists in this project", "name", code="exists")


def create_agent(name: str, persona: str, *, project_id: int | None = None, role: str | None = None) -> Agent:
    name = name.strip()
    if not name:
        raise ValidationError("name must not be empty", "name")
    persona_row = _persona(persona)
    if project_id is not None:
        get_project(project_id, field="project_id")
    _check_unique(name, project_id)
    agent = Agent(name=name, persona=persona_row.name, role=role if role is not None else persona_row.role,
                  project_id=project_id, status="idle")
    db.session.add(agent)
    db.session.commit()
    emit("agent.status_changed", project_id=project_id, agent_id=agent.id, data={"status": "idle", "new": True})
    return agent


def list_agents(*, project_id: int | None = None, status: str | None = None, persona: str | None = None,
                limit: int = 50, offset: int = 0) -> tuple[list[Agent], int]:
    query = select(Agent)
    if project_id is not None:
        query = query.where(Agent.project_id == project_id)
    if status is not None:
        if status not in AGENT_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(AGENT_STATUSES)}", "status")
        query = query.where(Agent.status == status)
    if persona is not None:
        query = query.where(Agent.persona == persona)
    return paging.page(query, Agent.id, limit=limit, offset=offset)


def update_agent(agent_id: int, changes: dict) -> Agent:
    agent = get_agent(agent_id)
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name:
            raise ValidationError("name must not be empty", "name")
        _check_unique(name, agent.project_id, except_id=agent_id)
        agent.name = name
    if "persona" in changes:
        agent.persona = _persona(changes["persona"]).name
    if "role" in changes:
        agent.role = changes["role"] or ""
    db.session.commit()
    return agent


def pause_agent(agent_id: int) -> Agent:
    """Paused agents are not dispatched; a running loop stops after its current step."""
    agent = get_agent(agent_id)
    if agent.status == "complete":
        raise Conflict(f"agent {agent_id} is complete", "status")
    agent.status = "paused"
    db.session.commit()
    emit("agent.status_changed", project_id=agent.project_id, agent_id=agent.id, data={"status": "paused"})
    return agent


def resume_agent(agent_id: int) -> Agent:
    agent = get_agent(agent_id)
    if agent.status != "paused":
        raise Conflict(f"agent {agent_id} is {agent.status}, not paused", "status")
    # Back to working if it still holds a bead, otherwise idle.
    db.session.execute(
        update(Agent).where(Agent.id == agent_id, Agent.status == "paused")
        .values(status="working" if agent.current_bead_id else "idle", updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.refresh(agent)
    emit("agent.status_changed", project_id=agent.project_id, agent_id=agent.id, data={"status": agent.status})
    return agent


def delete_agent(agent_id: int) -> None:
    agent = get_agent(agent_id)
    if agent.status == "working":
        raise Conflict(f"agent {agent_id} is working on bead {agent.current_bead_id}; pause it first", "status")
    db.session.delete(agent)
    db.session.commit()
