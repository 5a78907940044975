"""Escalations become decision beads a person decides; deciding unblocks the bead that asked."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Bead, User
from app.services import bead_comments, bead_graph, beads
from app.services.errors import Conflict, NotFound
from app.services import paging


def _active_owner(bead: Bead) -> int | None:
    """The decision goes to the asking bead's owner while they are an active user."""
    if bead.owner_id is None:
        return None
    return db.session.scalar(select(User.id).where(User.id == bead.owner_id, User.active.is_(True)))


def escalate(bead_id: int, reason: str, *, question: str | None = None, options: list | None = None,
             actor: str, origin_key: str | None = None) -> Bead:
    """Create a decision bead for `bead_id` and block the bead on it (idempotent by origin_key)."""
    bead = beads.get_bead(bead_id)
    options = [str(o)[:500] for o in (options or [])][:10]
    body = [question or reason]
    if options:
        body += ["", "Options:"] + [f"{i}. {o}" for i, o in enumerate(options, 1)]
    decision = beads.create_bead(
        bead.project_id, f"Decision for #{bead.id}: {reason}"[:200], description="\n".join(body), type="decision",
        priority=bead.priority, created_by=actor, origin_key=origin_key, owner_id=_active_owner(bead),
        meta={"escalated_from": bead.id, "reason": reason, "question": question or reason, "options": options},
    )
    bead_graph.add_dependency(bead.id, decision.id)
    if bead.status != "blocked":
        beads.block_bead(bead.id, f"waiting on decision #{decision.id}: {reason}"[:500], kind="escalation",
                         actor=actor)
    return decision


def get_decision(decision_id: int) -> Bead:
    bead = db.session.get(Bead, decision_id)
    if bead is None or bead.type != "decision":
        raise NotFound(f"decision {decision_id} not found", "id")
    return bead


def list_decisions(*, status: str | None = "open", project_id: int | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[Bead], int]:
    query = select(Bead).where(Bead.type == "decision")
    if status:
        query = query.where(Bead.status == status)
    if project_id is not None:
        query = query.where(Bead.project_id == project_id)
    return paging.page(query, Bead.priority, Bead.created_at, limit=limit, offset=offset)


def decide(decision_id: int, decision: str, rationale: str | None, actor: str) -> Bead:
    """Record the decision, close the decision bead, tell the asking bead and unblock it."""
    bead = get_decision(decision_id)
    if bead.status == "closed":
        raise Conflict(f"decision {decision_id} was already decided", "id", code="already_decided")
    bead.meta = {**(bead.meta or {}), "decision": decision, "rationale": rationale, "decided_by": actor}
    db.session.commit()
    beads.close_bead(decision_id, f"decided by {actor}: {decision}"[:1000], actor=actor)
    origin_id = (bead.meta or {}).get("escalated_from")
    origin = db.session.get(Bead, origin_id) if isinstance(origin_id, int) else None
    if origin is not None:
        text = f"Decision on #{decision_id} by {actor}: {decision}"
        if rationale:
            text += f"\nRationale: {rationale}"
        bead_comments.add_comment(origin.id, actor, text)
        if origin.status == "blocked" and origin.block_kind == "escalation":
            try:
                beads.unblock_bead(origin.id, f"decision #{decision_id} made")
            except Conflict:  # it also waits on another open decision: it stays blocked until that one is made
                db.session.rollback()
    return bead
