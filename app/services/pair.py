"""Pair programming: a person holds a bead's run (its loop waits), chats with the agent, then hands it back.

`hold` makes sure the bead has a running run that a person holds: the loop's run is paused (the loop
finishes its current step and parks, see `turns`), or, for an open bead, the bead is claimed for its agent
and a run is opened born paused. `begin_turn` then takes the run's lock for one pair turn (`pair_turn`
runs it). `resume` hands the run back: the loop is enqueued again if it had parked.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Agent, Bead, Persona, Run, Step, utcnow
from app.services import dispatch, loop, turns
from app.services.errors import Conflict, NotFound, ServiceError, ValidationError
from app.services.events import emit
from app.services.loop import LoopSettings

PAIR_WAIT_S = 10.0  # a pair message waits this long for the loop to finish its current step, then gets a 409
RESUME_WAIT_S = 5.0


@dataclass
class PairTurn:
    """A pair turn that may start: its run is held by a person and its lock is taken (release it when done)."""

    run_id: int
    bead_id: int
    project_id: int
    agent_id: int | None
    seq: int
    author: str
    lock: turns.RunLock


def resolve_bead(bead_id: int | None, agent_id: int | None) -> Bead:
    """The bead named, or the bead the agent works on now."""
    if (bead_id is None) == (agent_id is None):
        raise ValidationError("give exactly one of bead_id or agent_id", "bead_id")
    if agent_id is not None:
        agent = db.session.get(Agent, agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} not found", "agent_id")
        if agent.current_bead_id is None:
            raise Conflict(f"agent {agent.name} holds no bead right now: open a bead to pair on it", "agent_id",
                           code="no_bead")
        bead_id = agent.current_bead_id
    bead = db.session.get(Bead, bead_id)
    if bead is None:
        raise NotFound(f"bead {bead_id} not found", "bead_id")
    return bead


def current_run(bead: Bead) -> Run | None:
    """The bead's live run: running, holding the bead's current claim."""
    if bead.status != "in_progress":
        return None
    return db.session.scalar(select(Run).where(Run.bead_id == bead.id, Run.status == "running",
                                               Run.fencing_token == bead.fencing_token)
                             .order_by(Run.id.desc()).limit(1))


def _refuse_unpairable(bead: Bead) -> None:
    if bead.status == "closed":
        raise Conflict(f"bead {bead.id} is closed: there is nothing left to pair on", "bead_id", code="closed")
    if bead.type == "decision":
        raise Conflict("a decision bead is decided by a person, not worked by an agent", "bead_id",
                       code="not_claimable")
    if bead.status == "blocked":
        raise Conflict(f"bead {bead.id} is blocked ({bead.status_reason or 'no reason given'}): unblock it first",
                       "bead_id", code="blocked")


def _agent_for(bead: Bead) -> Agent:
    """Its assigned agent when that one is idle, else the idle agent the dispatcher would choose."""
    idle = list(db.session.scalars(select(Agent).where(Agent.status == "idle", (Agent.project_id == bead.project_id)
                                                       | Agent.project_id.is_(None)).order_by(Agent.id)).all())
    assigned = next((a for a in idle if a.id == bead.assigned_to), None)
    if assigned is not None:
        return assigned
    staffed = set(db.session.scalars(select(Agent.persona).where(Agent.status != "complete",
                                                                 (Agent.project_id == bead.project_id)
                                                                 | Agent.project_id.is_(None))).all())
    wanted = dispatch.persona_for(dispatch.hint_words(bead), list(db.session.scalars(select(Persona)).all()))
    chosen = dispatch.choose_agent(wanted, idle, staffed)
    if chosen is None:
        raise Conflict(f"no idle agent can take bead {bead.id} now; try again when one is free", "bead_id",
                       code="no_agent")
    return chosen


def _open_held_run(bead: Bead, settings: LoopSettings) -> Run:
    try:
        run = loop.start_run(bead.id, _agent_for(bead).id, settings)
    except ServiceError as exc:  # the claim was lost or the bead is not ready (open blockers)
        db.session.rollback()
        raise Conflict(exc.message, "bead_id", code=exc.code) from None
    run.counters = {**(run.counters or {}), turns.PARKED: True}  # born paused: the loop starts on hand-back
    return run


def _extend_lease(run: Run, seconds: int) -> None:
    db.session.execute(update(Bead).where(Bead.id == run.bead_id, Bead.fencing_token == run.fencing_token,
                                          Bead.status == "in_progress")
                       .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
                       .execution_options(synchronize_session=False))


def _set_hold(run: Run, user: str, hold_seconds: int) -> None:
    """The run is held by a person (kept if someone already holds it); the lease lasts the hold."""
    newly = not run.paused_by
    if newly:
        run.paused_by, run.paused_at = user[:64], utcnow()
    _extend_lease(run, hold_seconds)
    db.session.commit()
    if newly:
        emit("pair.paused", project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id,
             data={"run_id": run.id, "paused_by": run.paused_by})


def hold(bead: Bead, user: str, settings: LoopSettings, hold_seconds: int) -> Run:
    """A running run of this bead held by a person: the loop's own (paused), or a new one born paused."""
    _refuse_unpairable(bead)
    run = current_run(bead)
    if run is None:
        if bead.status != "open":
            raise Conflict(f"bead {bead.id} is in progress without a loop run (claimed by hand): redispatch it "
                           "first", "bead_id", code="no_run")
        run = _open_held_run(bead, settings)
    _set_hold(run, user, hold_seconds)
    return run


def pause(bead_id: int, user: str, hold_seconds: int) -> Run:
    """Pause the bead's loop for pairing: it finishes its current step and takes no further turn."""
    bead = resolve_bead(bead_id, None)
    _refuse_unpairable(bead)
    run = current_run(bead)
    if run is None:
        raise Conflict(f"no loop runs on bead {bead_id} ({bead.status}): send a message to start pairing",
                       "bead_id", code="not_running")
    _set_hold(run, user, hold_seconds)
    return run


def resume(bead_id: int, user: str, lease_seconds: int) -> tuple[Run, bool]:
    """Hand the run back to the loop: (the run, whether the loop must be enqueued because it had parked)."""
    bead = resolve_bead(bead_id, None)
    run = current_run(bead)
    if run is None or not run.paused_by:
        raise Conflict(f"bead {bead_id} is not paused for pairing", "bead_id", code="not_paused")
    lock = turns.RunLock(run.id, "resume")
    if not lock.acquire(RESUME_WAIT_S):
        if lock.unavailable:
            raise turns.TurnsUnavailable("cannot reach Redis to hand the run back; try again")
        raise Conflict("a turn is still running on this bead; hand it back when it has finished", "bead_id",
                       code="busy")
    try:
        db.session.refresh(run)
        if run.status != "running" or not run.paused_by:
            raise Conflict(f"bead {bead_id} is not paused for pairing any more", "bead_id", code="not_paused")
        counters = dict(run.counters or {})
        parked = bool(counters.pop(turns.PARKED, False))
        run.counters, run.paused_by, run.paused_at = counters, None, None
        _extend_lease(run, lease_seconds)
        db.session.commit()
    finally:
        lock.release()
    emit("pair.resumed", project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id,
         data={"run_id": run.id, "by": user, "loop_enqueued": parked})
    return run, parked


def check_pairable(bead_id: int | None, agent_id: int | None) -> Bead:
    """The bead to pair on, or the 4xx refusal (before a provider is even looked up)."""
    bead = resolve_bead(bead_id, agent_id)
    _refuse_unpairable(bead)
    return bead


def begin_turn(bead_id: int | None, agent_id: int | None, user: str, settings: LoopSettings,
               hold_seconds: int, wait_s: float = PAIR_WAIT_S) -> PairTurn:
    """Hold the bead's run and take its lock for one pair turn (4xx errors here, before anything streams)."""
    run = hold(resolve_bead(bead_id, agent_id), user, settings, hold_seconds)
    lock = turns.RunLock(run.id, "pair")
    if not lock.acquire(wait_s):
        if lock.unavailable:
            raise turns.TurnsUnavailable("cannot reach Redis to take a turn on this run; try again")
        raise Conflict(f"the loop is still in the middle of a turn on bead {run.bead_id}; it stops after it (the "
                       "bead is paused): send your message again in a moment", "bead_id", code="busy")
    try:
        db.session.refresh(run)
        bead = db.session.get(Bead, run.bead_id)
        db.session.refresh(bead)
        live = current_run(bead)
        if live is None or live.id != run.id:  # the loop's last turn ended it
            _refuse_unpairable(bead)
            raise Conflict(f"the run on bead {bead.id} ended meanwhile ({bead.status}); send your message again",
                           "bead_id", code="run_ended")
        _set_hold(run, user, hold_seconds)  # held again if someone handed it back while we waited
        seq = run.iterations + 1
        pending = db.session.scalar(select(Step.kind).where(Step.run_id == run.id, Step.seq == seq))
        if pending is not None:
            raise Conflict(f"turn {seq} of this run is stored but its actions have not run yet: hand the bead back "
                           "to the loop to finish it, then pause again", "bead_id", code="pending_step")
        return PairTurn(run.id, run.bead_id, run.project_id, run.agent_id, seq, user[:64], lock)
    except Exception:
        lock.release()
        raise


def state(bead_id: int) -> dict:
    """The pair panel's state: whether a loop runs, whether a person holds it, and by whom."""
    bead = resolve_bead(bead_id, None)
    run = current_run(bead)
    mode = "none" if run is None else ("paused" if run.paused_by else "running")
    return {"bead_id": bead.id, "bead_status": bead.status, "state": mode, "run": run.to_dict() if run else None,
            "paused_by": run.paused_by if run else None,
            "paused_at": run.to_dict()["paused_at"] if run else None}


def transcript(bead_id: int, limit: int = 200, offset: int = 0) -> dict:
    """The bead's pair turns (oldest first) with the pair state."""
    query = select(Step).where(Step.bead_id == bead_id, Step.kind == "pair")
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Step.id).limit(limit).offset(offset)).all()
    return {**state(bead_id), "items": [s.to_dict() for s in items], "total": int(total or 0), "limit": limit,
            "offset": offset}
