"""The bead dependency graph: edges with cycle rejection, readiness, and the atomic claim."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, exists, func, select, text, update
from sqlalchemy.orm import aliased, lazyload

from app.extensions import db
from app.models import Agent, Bead, BeadDependency, Project, utcnow
from app.services.errors import Conflict, NotFound, ValidationError
from app.services.events import emit
from app.services import paging

_Blocker = aliased(Bead)

# A bead is ready when it is open and no bead it is blocked by is still unclosed.
_has_open_blocker = (
    exists()
    .where(BeadDependency.bead_id == Bead.id)
    .where(BeadDependency.blocker_id == _Blocker.id)
    .where(_Blocker.status != "closed")
)
READY = and_(Bead.status == "open", ~_has_open_blocker)


def edges_of(bead_ids: list[int]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(blocked_by, blocks) for the given beads, each a map id -> sorted ids."""
    blocked_by: dict[int, list[int]] = {}
    blocks: dict[int, list[int]] = {}
    if not bead_ids:
        return blocked_by, blocks
    rows = db.session.execute(
        select(BeadDependency.bead_id, BeadDependency.blocker_id).where(
            (BeadDependency.bead_id.in_(bead_ids)) | (BeadDependency.blocker_id.in_(bead_ids))
        ).order_by(BeadDependency.bead_id, BeadDependency.blocker_id)
    ).all()
    wanted = set(bead_ids)
    for bead_id, blocker_id in rows:
        if bead_id in wanted:
            blocked_by.setdefault(bead_id, []).append(blocker_id)
        if blocker_id in wanted:
            blocks.setdefault(blocker_id, []).append(bead_id)
    return blocked_by, blocks


def _path_to(start: int, goal: int) -> list[int] | None:
    """A blocked-by path start -> ... -> goal, searching breadth first one level per query."""
    parents: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        rows = db.session.execute(
            select(BeadDependency.bead_id, BeadDependency.blocker_id).where(BeadDependency.bead_id.in_(frontier))
        ).all()
        frontier = []
        for bead_id, blocker_id in rows:
            if blocker_id in parents:
                continue
            parents[blocker_id] = bead_id
            if blocker_id == goal:
                path = [goal]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return list(reversed(path))
            frontier.append(blocker_id)
    return None


def add_dependency(bead_id: int, blocker_id: int, *, commit: bool = True) -> None:
    """Record that `bead_id` is blocked by `blocker_id`; refuses self-edges, other projects and cycles."""
    bead = db.session.get(Bead, bead_id)
    if bead is None:
        raise NotFound(f"bead {bead_id} not found", "id")
    blocker = db.session.get(Bead, blocker_id)
    if blocker is None:
        raise NotFound(f"blocking bead {blocker_id} not found", "blocked_by")
    if blocker_id == bead_id:
        raise ValidationError("a bead cannot block itself", "blocked_by")
    if blocker.project_id != bead.project_id:
        raise ValidationError("dependencies must stay within one project", "blocked_by")
    # Serialise graph edits per project (PostgreSQL row lock; SQLite serialises writers anyway).
    db.session.execute(select(Project.id).where(Project.id == bead.project_id).with_for_update())
    if db.session.get(BeadDependency, (bead_id, blocker_id)) is not None:
        return
    path = _path_to(blocker_id, bead_id)
    if path is not None:
        cycle = [bead_id] + path
        raise Conflict(
            "dependency would create a cycle: " + " -> ".join(f"#{i}" for i in cycle)
            + " (each bead blocked by the next)",
            "blocked_by", code="cycle", details={"cycle": cycle},
        )
    db.session.add(BeadDependency(bead_id=bead_id, blocker_id=blocker_id))
    if commit:
        db.session.commit()
    else:
        db.session.flush()


def add_dependencies(bead_id: int, blocker_ids: list[int]) -> None:
    """Add several blockers in one transaction: all of them, or none if any is refused."""
    try:
        for blocker_id in dict.fromkeys(blocker_ids):
            add_dependency(bead_id, blocker_id, commit=False)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()


def remove_dependency(bead_id: int, blocker_id: int) -> None:
    if db.session.get(Bead, bead_id) is None:
        raise NotFound(f"bead {bead_id} not found", "id")
    result = db.session.execute(
        delete(BeadDependency).where(BeadDependency.bead_id == bead_id, BeadDependency.blocker_id == blocker_id)
    )
    if result.rowcount == 0:
        raise NotFound(f"bead {bead_id} is not blocked by bead {blocker_id}", "other")
    db.session.commit()


def ready_beads(project_id: int | None = None, limit: int = 50, offset: int = 0,
                decisions: bool = True) -> tuple[list[Bead], int]:
    """Open beads whose blockers are all closed: P0 first, then oldest first (`decisions=False`: only the work
    an agent can take; decision beads wait for a person)."""
    query = select(Bead).where(READY)
    if not decisions:
        query = query.where(Bead.type != "decision")
    if project_id is not None:
        query = query.where(Bead.project_id == project_id)
    return paging.page(query, Bead.priority, Bead.created_at, Bead.id, limit=limit, offset=offset)


class AtCapacity(Conflict):
    """The installation already runs as many beads as it may (`max_running`): no claim can start one now."""

    code = "at_capacity"


CLAIMS_LOCK_KEY = 0x6C6F6F6D  # "loom": the PostgreSQL advisory lock claims under an installation limit take


def _running_with_this_claim() -> int:
    """Beads in progress, this transaction's claim included, counted while no other limited claim can commit:
    PostgreSQL takes a transaction-scoped advisory lock (released at commit or rollback, so PgBouncer's
    transaction pooling keeps it), SQLite already lets one writer at a time hold its write lock."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIMS_LOCK_KEY})
    return db.session.scalar(select(func.count()).select_from(Bead).where(Bead.status == "in_progress"))


def claim_bead(bead_id: int, agent_id: int, lease_seconds: int, max_running: int | None = None) -> Bead:
    """Atomically give a ready bead to an idle agent, or raise Conflict.

    Two compare-and-set UPDATEs in one transaction: the agent idle -> working, then the bead
    open+unassigned+ready -> in_progress with a lease and a bumped fencing token. Exactly one
    of any number of concurrent claimers sees rowcount 1 on both; everyone else gets a 409.
    With `max_running` (the installation's limit, for the dispatcher's claims) the claim is undone, raising
    AtCapacity, when it would make more beads run than that; those claims take turns for the count only.
    """
    bead = db.session.get(Bead, bead_id, options=[lazyload(Bead.tag_rows)])
    if bead is None:
        raise NotFound(f"bead {bead_id} not found", "id")
    agent = db.session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", "agent_id")
    if agent.project_id is not None and agent.project_id != bead.project_id:
        raise ValidationError(f"agent {agent_id} belongs to another project", "agent_id")
    if bead.type == "decision":
        raise Conflict("decision beads are decided by a person, not claimed by an agent", "id",
                       code="not_claimable")
    project_id = bead.project_id
    db.session.rollback()  # drop the snapshot: the decision below rests only on the conditional UPDATEs
    now = utcnow()

    got_agent = db.session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.status == "idle")
        .values(status="working", current_bead_id=bead_id, last_heartbeat_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if got_agent != 1:
        db.session.rollback()
        status = db.session.scalar(select(Agent.status).where(Agent.id == agent_id))
        raise Conflict(f"agent {agent_id} is {status}, not idle", "agent_id", code="agent_busy")

    got_bead = db.session.execute(
        update(Bead)
        .where(Bead.id == bead_id, Bead.project_id == project_id, Bead.assigned_to.is_(None), READY)
        .values(status="in_progress", assigned_to=agent_id, lease_expires_at=now + timedelta(seconds=lease_seconds),
                fencing_token=Bead.fencing_token + 1, dispatch_count=Bead.dispatch_count + 1,
                status_reason=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if got_bead != 1:
        db.session.rollback()
        raise Conflict(_why_not_claimable(bead_id), "id", code="not_claimable")
    if max_running is not None and (running := _running_with_this_claim()) > max_running:
        db.session.rollback()
        raise AtCapacity(f"{running - 1} beads already run, the most allowed at once ({max_running})", "id")
    db.session.commit()
    claimed = db.session.get(Bead, bead_id, populate_existing=True, options=[lazyload(Bead.tag_rows)])  # as committed
    emit("bead.claimed", project_id=project_id, bead_id=bead_id, agent_id=agent_id,
         data={"fencing_token": claimed.fencing_token})
    emit("bead.status_changed", project_id=project_id, bead_id=bead_id, agent_id=agent_id,
         data={"from": "open", "to": "in_progress"})
    emit("agent.status_changed", project_id=project_id, agent_id=agent_id,
         data={"status": "working", "bead_id": bead_id})
    return claimed


def _why_not_claimable(bead_id: int) -> str:
    bead = db.session.get(Bead, bead_id)
    if bead is None:
        return f"bead {bead_id} no longer exists"
    if bead.status != "open":
        holder = f" by agent {bead.assigned_to}" if bead.status == "in_progress" and bead.assigned_to else ""
        return f"bead {bead_id} is {bead.status}{holder}"
    if bead.assigned_to is not None:
        return f"bead {bead_id} is already assigned to agent {bead.assigned_to}"
    return f"bead {bead_id} is waiting on unclosed blockers"


def dependency_tree(bead_id: int, depth: int = 4, limit: int = 200) -> dict:
    """The bead's neighbourhood for pages: blockers (recursively, up to `depth`) and the beads it blocks.

    Returns {"nodes": {id: {id, title, status, priority}}, "blocked_by": {id: [ids]}, "blocks": [ids]}.
    """
    blocked_by: dict[int, list[int]] = {}
    frontier, seen = [bead_id], {bead_id}
    for _ in range(depth):
        if not frontier or len(seen) >= limit:
            break
        edges, _ = edges_of(frontier)
        frontier = []
        for child, parents in edges.items():
            blocked_by[child] = parents
            frontier += [p for p in parents if p not in seen]
            seen.update(parents)
    _, dependants = edges_of([bead_id])
    blocks = dependants.get(bead_id, [])
    ids = seen | set(blocks)
    rows = db.session.execute(select(Bead.id, Bead.title, Bead.status, Bead.priority).where(Bead.id.in_(ids))).all()
    nodes = {row.id: {"id": row.id, "title": row.title, "status": row.status, "priority": row.priority}
             for row in rows}
    return {"nodes": nodes, "blocked_by": blocked_by, "blocks": blocks}
