"""Firing a motivation exactly once per occasion.

1. Claim: insert the MotivationFiring row (its UNIQUE `dedup_key` names the occasion; whoever inserts second gets
   an IntegrityError and does nothing), then lock the motivation row and check enabled-ness and the cooldown for
   that project inside the same transaction, so two concurrent firings cannot both pass it.
2. Effects: create the bead (origin_key = the firing's key, so doing it twice yields one bead), ask for a
   dispatch, mark the firing `fired` and emit `motivation.fired`. A crash between 1 and 2 leaves a `pending`
   firing, which the Beat tick completes later (`repair_pending`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Agent, Bead, Motivation, MotivationFiring, Project, iso, utcnow
from app.services import beads
from app.services.events import emit
from app.services.errors import ServiceError
from app.services.motivations import describe_trigger, render

log = logging.getLogger("loom.motivations")
REPAIR_AFTER = timedelta(seconds=60)
ORIGIN_PREFIX = "mf:"
CREATED_BY_PREFIX = "motivation:"
Wake = Callable[[], None] | None


def is_motivated(bead: Bead | None) -> bool:
    """Beads a motivation made never trigger event motivations (the no-chain rule: motivated work is one deep)."""
    return bead is not None and ("motivation" in (bead.meta or {})
                                 or (bead.created_by or "").startswith(CREATED_BY_PREFIX))


def _same_project(project_id: int | None):
    column = MotivationFiring.project_id
    return column.is_(None) if project_id is None else column == project_id


def claim(motivation_id: int, key: str, project_id: int | None, trigger: dict, now: datetime, *,
          honour_cooldown: bool = True) -> MotivationFiring | None:
    """Take the occasion: the new `pending` firing, a `skipped` one (cooling down), or None (not ours)."""
    firing = MotivationFiring(motivation_id=motivation_id, dedup_key=key[:120], project_id=project_id,
                              trigger=trigger, outcome="pending", fired_at=now)
    db.session.add(firing)
    try:
        db.session.flush()
    except IntegrityError:  # fired already (by another Beat, worker or path), or the motivation is gone
        db.session.rollback()
        return None
    motivation = db.session.scalars(select(Motivation).where(Motivation.id == motivation_id)
                                    .with_for_update(key_share=True)  # FOR NO KEY UPDATE: no clash with the FK
                                    .execution_options(populate_existing=True)).first()
    if motivation is None or not motivation.enabled:
        db.session.rollback()
        return None
    if honour_cooldown and motivation.cooldown_s:
        last = db.session.scalar(select(func.max(MotivationFiring.fired_at)).where(
            MotivationFiring.motivation_id == motivation_id, _same_project(project_id),
            MotivationFiring.outcome.in_(("pending", "fired")), MotivationFiring.id != firing.id))
        if last is not None and (now - last).total_seconds() < motivation.cooldown_s:
            firing.outcome = "skipped"
            firing.detail = f"cooling down: fired at {iso(last)}, cooldown {motivation.cooldown_s} s"
            db.session.commit()
            return firing
    motivation.last_fired_at = now
    motivation.fire_count = Motivation.fire_count + 1
    db.session.commit()
    return firing


def placeholders(motivation: Motivation, firing: MotivationFiring, now: datetime) -> dict:
    project = db.session.get(Project, firing.project_id) if firing.project_id else None
    trigger = firing.trigger or {}
    values = {"bead_id": None, "title": None, "command": None, "exit_code": None, "reason": None, "value": None,
              "metric": None, "threshold": None, "event": motivation.event,
              "idle_minutes": motivation.idle_minutes,
              "project": project.name if project else None, "project_id": firing.project_id,
              "date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H:%M UTC"), "motivation": motivation.name,
              "persona": motivation.persona, "firing_id": firing.id}
    values.update({k: v for k, v in trigger.items() if k in values and v is not None})
    return values


def _create_bead(motivation: Motivation, firing: MotivationFiring, now: datetime) -> Bead:
    if firing.project_id is None:
        raise ServiceError("this occasion names no project to create the bead in", "project_id")
    template, values = motivation.bead_template or {}, placeholders(motivation, firing, now)
    title = render(template["title"], values)[:200]
    description = render(template.get("description") or "", values)
    description += (f"\n\n_Created by the motivation \u201c{motivation.name}\u201d ({describe_trigger(motivation)}), "
                    f"firing #{firing.id}._")
    tags = [*template.get("tags", []), "motivation", *([motivation.persona] if motivation.persona else [])]
    meta = {"motivation": {"id": motivation.id, "name": motivation.name, "firing_id": firing.id,
                           "kind": motivation.kind}}
    if (firing.trigger or {}).get("bead_id"):
        meta["motivation"]["subject_bead_id"] = firing.trigger["bead_id"]
    origin_key = (ORIGIN_PREFIX + firing.dedup_key)[:100]
    acceptance = render(template["acceptance"], values) if template.get("acceptance") else None
    created_by = (CREATED_BY_PREFIX + motivation.name)[:100]
    try:
        return beads.create_bead(firing.project_id, title, description=description.strip(),
                                 priority=template.get("priority", 2), type=template.get("type") or "task",
                                 tags=tags, acceptance=acceptance, created_by=created_by, meta=meta,
                                 origin_key=origin_key)
    except IntegrityError:  # a concurrent repair created it a moment ago: the same bead
        db.session.rollback()
        return db.session.scalars(select(Bead).where(Bead.origin_key == origin_key)).one()


def _wake(motivation: Motivation, project_id: int | None, bead_id: int | None) -> tuple[int | None, str | None]:
    """The agent of the persona that takes the work (it may have claimed the new bead already), or why none will
    right now."""
    query = select(Agent).where(Agent.persona == motivation.persona, Agent.status != "complete").order_by(Agent.id)
    if project_id is not None:
        query = query.where((Agent.project_id == project_id) | Agent.project_id.is_(None))
    agents = list(db.session.scalars(query).all())
    taken = next((a for a in agents if bead_id is not None and a.current_bead_id == bead_id), None)
    if taken is not None:
        return taken.id, f"{taken.name} ({motivation.persona}) is on it"
    idle = next((a for a in agents if a.status == "idle"), None)
    if idle is not None:
        return idle.id, f"woke {idle.name} ({motivation.persona})"
    if any(a.status == "working" for a in agents):
        return None, f"every {motivation.persona} agent is busy: the work waits for one"
    if agents:
        names = ", ".join(a.name for a in agents)
        return None, f"the {motivation.persona} agent is paused ({names}): the work waits until it is resumed"
    return None, f"no {motivation.persona} agent here: the dispatcher gives the bead to another agent"


def complete(firing_id: int, now: datetime, wake: Wake = None) -> MotivationFiring:
    """Carry out a pending firing's effects (idempotent: a second call finds it done)."""
    firing = db.session.get(MotivationFiring, firing_id)
    if firing is None or firing.outcome != "pending":
        return firing
    motivation = db.session.get(Motivation, firing.motivation_id)
    outcome, detail, bead_id, agent_id = "fired", None, None, None
    try:
        if motivation.bead_template:
            bead_id = _create_bead(motivation, firing, now).id
    except ServiceError as exc:
        db.session.rollback()
        outcome, detail = "failed", exc.message
    if outcome == "fired" and motivation.wake_agent:
        agent_id, detail = _wake(motivation, firing.project_id, bead_id)
        if wake is not None:
            wake()
    won = db.session.execute(update(MotivationFiring).where(MotivationFiring.id == firing_id,
                                                            MotivationFiring.outcome == "pending")
                             .values(outcome=outcome, detail=detail, bead_id=bead_id, agent_id=agent_id)).rowcount
    db.session.commit()
    if won:
        emit("motivation.fired", project_id=firing.project_id, bead_id=bead_id, agent_id=agent_id,
             data={"motivation_id": motivation.id, "name": motivation.name, "kind": motivation.kind,
                   "firing_id": firing.id, "outcome": outcome, "detail": detail, "dedup_key": firing.dedup_key,
                   "trigger": describe_trigger(motivation), "fired_at": iso(firing.fired_at)})
    return db.session.get(MotivationFiring, firing_id)


def fire(motivation_id: int, key: str, project_id: int | None, trigger: dict, *, now: datetime | None = None,
         honour_cooldown: bool = True, wake: Wake = None) -> MotivationFiring | None:
    """Fire once for this occasion; None when someone else already did (or the motivation is off)."""
    now = now or utcnow()
    firing = claim(motivation_id, key, project_id, trigger, now, honour_cooldown=honour_cooldown)
    if firing is None or firing.outcome != "pending":
        return firing
    return complete(firing.id, now, wake)


def repair_pending(now: datetime, wake: Wake = None, limit: int = 100) -> int:
    """Finish firings left `pending` by a process that died after claiming (their bead is made at most once)."""
    ids = db.session.scalars(select(MotivationFiring.id).where(MotivationFiring.outcome == "pending",
                                                               MotivationFiring.fired_at < now - REPAIR_AFTER)
                             .order_by(MotivationFiring.id).limit(limit)).all()
    for firing_id in ids:
        log.warning("completing motivation firing %s left pending", firing_id)
        complete(firing_id, now, wake)
    return len(ids)
