"""Bead CRUD: create, read, list with filters, update, close/unblock/reopen, delete (comments: bead_comments.py)."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import exists, select

from app.extensions import db
from app.models import BEAD_STATUSES, BEAD_TYPES, Agent, Bead, BeadDependency, BeadTag, User, utcnow
from app.services import bead_graph, workspace_cleanup
from app.services.workspace import WorkspaceError
from app.services.events import emit
from app.services.personas import triage_persona
from app.services.errors import Conflict, NotFound, ValidationError
from app.services.projects import get_project
from app.services import paging

log = logging.getLogger("loom.beads")

MAX_TAGS = 20


def get_bead(bead_id: int) -> Bead:
    bead = db.session.get(Bead, bead_id)
    if bead is None:
        raise NotFound(f"bead {bead_id} not found", "id")
    return bead


def bead_view(bead: Bead) -> dict:
    """The API shape of one bead, with both directions of its dependency edges."""
    blocked_by, blocks = bead_graph.edges_of([bead.id])
    return bead.to_dict(blocked_by=blocked_by.get(bead.id, []), blocks=blocks.get(bead.id, []))


def beads_view(beads: list[Bead]) -> list[dict]:
    blocked_by, blocks = bead_graph.edges_of([b.id for b in beads])
    return [b.to_dict(blocked_by=blocked_by.get(b.id, []), blocks=blocks.get(b.id, [])) for b in beads]


def normalise_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in tags:
        tag = raw.strip()
        if not tag or len(tag) > 50:
            raise ValidationError("each tag must be 1-50 characters", "tags")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise ValidationError(f"at most {MAX_TAGS} tags", "tags")
    return sorted(out)


def _owner(user_id: int | None) -> int | None:
    """A bead's owner is an active user (or nobody)."""
    if user_id is None:
        return None
    if db.session.scalar(select(User.id).where(User.id == user_id, User.active.is_(True))) is None:
        raise ValidationError(f"owner_id: no active user {user_id}", "owner_id")
    return user_id


def create_bead(project_id: int, title: str, *, description: str = "", priority: int = 2,
                type: str = "task", tags: Iterable[str] = (), blocked_by: Iterable[int] = (),
                acceptance: str | None = None, created_by: str | None = None, meta: dict | None = None,
                origin_key: str | None = None, owner_id: int | None = None) -> Bead:
    """Create a bead. With an `origin_key` (an agent action's idempotency key) a repeat returns the first."""
    get_project(project_id, field="project_id")
    if origin_key is not None:
        existing = db.session.scalar(select(Bead).where(Bead.origin_key == origin_key))
        if existing is not None:
            return existing
    title = title.strip()
    if not title:
        raise ValidationError("title must not be empty", "title")
    if type not in BEAD_TYPES:
        raise ValidationError(f"type must be one of {', '.join(BEAD_TYPES)}", "type")
    if priority not in (0, 1, 2, 3):
        raise ValidationError("priority must be 0 (P0, highest) to 3 (P3)", "priority")
    bead = Bead(project_id=project_id, title=title, description=description or "", priority=priority,
                type=type, acceptance=acceptance or None, created_by=created_by, error_history=[],
                meta=meta or {}, origin_key=origin_key, owner_id=_owner(owner_id))
    bead.tag_rows = [BeadTag(tag=t) for t in normalise_tags(tags)]
    db.session.add(bead)
    db.session.flush()
    blockers = list(dict.fromkeys(blocked_by))
    for blocker_id in blockers:
        bead_graph.add_dependency(bead.id, blocker_id, commit=False)
    db.session.commit()
    emit("bead.created", project_id=project_id, bead_id=bead.id,
         data={"title": bead.title, "priority": bead.priority, "type": bead.type, "status": bead.status,
               "tags": bead.tags, "blocked_by": blockers, "created_by": created_by, "owner_id": bead.owner_id})
    return bead


def list_beads(*, project_id: int | None = None, status: str | None = None, priority: int | None = None,
               type: str | None = None, assigned_to: int | None = None, tag: str | None = None,
               limit: int = 50, offset: int = 0) -> tuple[list[Bead], int]:
    query = select(Bead)
    if project_id is not None:
        query = query.where(Bead.project_id == project_id)
    if status is not None:
        if status not in BEAD_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(BEAD_STATUSES)}", "status")
        query = query.where(Bead.status == status)
    if priority is not None:
        query = query.where(Bead.priority == priority)
    if type is not None:
        query = query.where(Bead.type == type)
    if assigned_to is not None:
        query = query.where(Bead.assigned_to == assigned_to)
    if tag is not None:
        query = query.where(exists().where(BeadTag.bead_id == Bead.id, BeadTag.tag == tag))
    return paging.page(query, Bead.priority, Bead.created_at, Bead.id, limit=limit, offset=offset)


def update_bead(bead_id: int, changes: dict) -> Bead:
    """Edit fields; a `status` change goes through the same rules as the dedicated routes."""
    bead = get_bead(bead_id)
    if "title" in changes:
        title = (changes["title"] or "").strip()
        if not title:
            raise ValidationError("title must not be empty", "title")
        bead.title = title
    if "description" in changes:
        bead.description = changes["description"] or ""
    if "priority" in changes:
        if changes["priority"] not in (0, 1, 2, 3):
            raise ValidationError("priority must be 0 (P0, highest) to 3 (P3)", "priority")
        bead.priority = changes["priority"]
    if "type" in changes:
        if changes["type"] not in BEAD_TYPES:
            raise ValidationError(f"type must be one of {', '.join(BEAD_TYPES)}", "type")
        bead.type = changes["type"]
    if "acceptance" in changes:
        bead.acceptance = changes["acceptance"] or None
    if "tags" in changes:
        bead.tag_rows = [BeadTag(tag=t) for t in normalise_tags(changes["tags"] or [])]
    owner_before = bead.owner_id
    if "owner_id" in changes:
        bead.owner_id = _owner(changes["owner_id"])
    db.session.flush()
    status = changes.get("status")
    if status is not None and status != bead.status:
        reason = changes.get("reason")
        if status == "closed":
            return close_bead(bead_id, reason)
        if status == "blocked":
            return block_bead(bead_id, reason or "blocked by a user")
        if status == "open":
            return reopen_bead(bead_id, reason)
        raise Conflict("a bead goes in_progress only by being claimed (POST /beads/{id}/claim)", "status")
    db.session.commit()
    emit("bead.updated", project_id=bead.project_id, bead_id=bead.id,
         data={"fields": sorted(changes), "title": bead.title, "priority": bead.priority, "type": bead.type,
               "tags": bead.tags, "status": bead.status, "owner_id": bead.owner_id,
               "owner_changed": bead.owner_id != owner_before})
    return bead


def _release_agent(bead: Bead) -> int | None:
    """Free the agent holding this bead; returns its id when it went back to idle."""
    if bead.assigned_to is not None:
        agent = db.session.get(Agent, bead.assigned_to)
        if agent is not None and agent.current_bead_id == bead.id:
            agent.current_bead_id = None
            if agent.status == "working":
                agent.status = "idle"
                return agent.id
    return None


def _status_changed(bead: Bead, old: str, freed_agent: int | None, event: str | None = None,
                    actor: str | None = None) -> None:
    """`actor`: the person who changed it (the activity list names them), None for the engine's own changes."""
    data = {"from": old, "to": bead.status, "reason": bead.status_reason, "title": bead.title,
            "priority": bead.priority, "type": bead.type, "assigned_to": bead.assigned_to,
            "block_kind": bead.block_kind, **({"actor": actor} if actor else {})}
    emit("bead.status_changed", project_id=bead.project_id, bead_id=bead.id, data=data)
    if event:
        emit(event, project_id=bead.project_id, bead_id=bead.id, data=data)
    if freed_agent is not None:
        emit("agent.status_changed", project_id=bead.project_id, agent_id=freed_agent,
             data={"status": "idle", "bead_id": None})


def close_bead(bead_id: int, reason: str | None = None, actor: str | None = None) -> Bead:
    """Close a bead (idempotent). Its dependants whose other blockers are closed become ready."""
    bead = get_bead(bead_id)
    if bead.status == "closed":
        return bead
    old, freed = bead.status, _release_agent(bead)
    bead.status = "closed"
    bead.status_reason = reason
    bead.block_kind = None
    bead.closed_at = utcnow()
    bead.lease_expires_at = None
    db.session.commit()
    _status_changed(bead, old, freed, "bead.closed", actor)
    return bead


AUTO_BLOCK_KINDS = ("loop", "provider", "auth", "rate_limit", "workspace")


def _route_to_triage(bead: Bead) -> None:
    """Automatic blocks go to the triage persona (cto, else engineering-manager) for a person to look at."""
    persona = triage_persona()
    if persona is None:
        return
    bead.meta = {**(bead.meta or {}), "triage_persona": persona}
    agent_id = db.session.scalar(select(Agent.id).where(Agent.persona == persona, Agent.project_id == bead.project_id)
                                 .order_by(Agent.id).limit(1))
    bead.assigned_to = agent_id


def block_bead(bead_id: int, reason: str, kind: str = "user", actor: str | None = None) -> Bead:
    bead = get_bead(bead_id)
    if bead.status == "closed":
        raise Conflict("a closed bead cannot be blocked; reopen it first", "status")
    old, freed = bead.status, _release_agent(bead)
    bead.status = "blocked"
    bead.status_reason = reason
    bead.block_kind = kind
    if kind in AUTO_BLOCK_KINDS:
        _route_to_triage(bead)
    bead.lease_expires_at = None
    db.session.commit()
    _status_changed(bead, old, freed, "bead.blocked", actor)
    return bead


def unblock_bead(bead_id: int, reason: str | None = None, actor: str | None = None) -> Bead:
    bead = get_bead(bead_id)
    if bead.status != "blocked":
        raise Conflict(f"bead {bead_id} is {bead.status}, not blocked", "status")
    waiting_on = db.session.scalar(select(Bead.id).join(BeadDependency, BeadDependency.blocker_id == Bead.id).where(
        BeadDependency.bead_id == bead_id, Bead.type == "decision", Bead.status != "closed").limit(1))
    if waiting_on is not None:  # it would be open but never ready: the decision is what it waits for
        raise Conflict(f"bead {bead_id} waits on decision #{waiting_on}: decide it "
                       f"(POST /api/v1/decisions/{waiting_on}/decide) and the bead goes on", "status",
                       code="waits_on_decision")
    bead.status = "open"
    bead.status_reason = reason
    bead.block_kind = None
    bead.assigned_to = None
    db.session.commit()
    _status_changed(bead, "blocked", None, actor=actor)
    return bead


def reopen_bead(bead_id: int, reason: str | None = None, actor: str | None = None) -> Bead:
    """Back to `open` from any status: releases a claim (the fencing token stops the old holder)."""
    bead = get_bead(bead_id)
    old, freed = bead.status, _release_agent(bead)
    bead.status = "open"
    bead.status_reason = reason
    bead.block_kind = None
    bead.assigned_to = None
    bead.lease_expires_at = None
    bead.closed_at = None
    db.session.commit()
    if old != "open":
        _status_changed(bead, old, freed, actor=actor)
    return bead


def delete_bead(bead_id: int, force: bool = False, data_dir: str | None = None) -> None:
    """Refuse to delete a bead others depend on (or one being worked on) unless `force` is given. With `data_dir`,
    its worktree goes and its branch is renamed (workspace_cleanup.retire_bead_workspace)."""
    bead = get_bead(bead_id)
    dependants = db.session.scalars(
        select(BeadDependency.bead_id).where(BeadDependency.blocker_id == bead_id).order_by(BeadDependency.bead_id)
    ).all()
    if dependants and not force:
        raise Conflict(
            f"bead {bead_id} blocks beads {', '.join(map(str, dependants))}; remove those dependencies "
            "or delete with force=true (the dependants stop waiting on it)", "id",
            code="has_dependants", details={"dependants": list(dependants)},
        )
    if bead.status == "in_progress" and not force:
        raise Conflict(f"bead {bead_id} is in progress; close it first or delete with force=true", "status")
    project_id, freed = bead.project_id, _release_agent(bead)
    db.session.delete(bead)
    db.session.commit()
    if data_dir is not None:
        try:
            workspace_cleanup.retire_bead_workspace(data_dir, project_id, bead_id)
        except (WorkspaceError, OSError) as exc:  # the row is gone either way; the periodic clean-up retires it
            log.warning("bead %s deleted, its workspace not retired: %s", bead_id, exc)
    emit("bead.deleted", project_id=project_id, bead_id=bead_id)
    if freed is not None:
        emit("agent.status_changed", project_id=project_id, agent_id=freed, data={"status": "idle"})
