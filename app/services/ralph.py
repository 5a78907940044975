"""Ralph, the maintenance loop (every 10 s): nothing stuck, nothing lost.

1. reset zombie agents (working, no heartbeat, no live lease) and abandon their runs;
2. beads whose lease expired (their worker died): resume the run from its last applied step, or
   reopen the bead after too many resumes; a turn whose worker died mid-way (app/services/turn_watch.py) ends
   its bead's lease at once, so its run resumes without waiting for the lease to run out;
3. block beads that keep being dispatched without finishing, for the triage persona;
4. retry provider-blocked beads once the provider is healthy again (never budget blocks);
5. release budget reservations of LLM calls that never settled (their worker died).
Every action is a log entry and a `ralph.action` event.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from flask import current_app
from sqlalchemy import exists, select, update

from app.extensions import db
from app.models import Agent, Bead, Run, utcnow
from app.services import beads, budgets, turn_watch
from app.services.events import emit
from app.services.logs import record_log

HEARTBEAT_KEY = "loom:ralph:heartbeat"
ACTIONS_KEY = "loom:metrics:ralph_actions"  # kind -> count, for loom_ralph_actions_total
log = logging.getLogger("loom.ralph")
BATCH = 500


@dataclass
class RalphSettings:
    lease_seconds: int = 300
    zombie_seconds: int = 300
    recover_transient_seconds: int = 120
    recover_auth_seconds: int = 7200
    max_resumes: int = 3
    max_dispatches: int = 10
    reservation_seconds: int = 1800


def _action(kind: str, message: str, *, project_id: int | None = None, bead_id: int | None = None,
            agent_id: int | None = None) -> None:
    record_log("WARNING", "ralph", message, project_id=project_id, bead_id=bead_id, agent_id=agent_id)
    log.warning("ralph %s: %s", kind, message, extra={"project_id": project_id, "bead_id": bead_id,
                                                       "agent_id": agent_id})
    emit("ralph.action", project_id=project_id, bead_id=bead_id, agent_id=agent_id,
         data={"action": kind, "message": message})
    try:
        current_app.extensions["loom.redis"]().hincrby(ACTIONS_KEY, kind, 1)
    except redis.RedisError as exc:  # a lost count never stops Ralph
        log.warning("ralph action %s not counted (Redis unavailable: %s)", kind, exc)


def reset_zombie_agents(now: datetime, settings: RalphSettings) -> list[int]:
    """Working agents with no heartbeat for a while and no bead of theirs in progress go back to idle.

    An agent whose bead is still in progress under its claim is left to the lease phase, even with the lease
    run out: that one resumes the run from its last step (or reopens the bead and frees the agent after too
    many resumes). Resetting it here first, as the heartbeat and the lease age alike, redid every bead of a
    killed worker from turn 1."""
    cutoff = now - timedelta(seconds=settings.zombie_seconds)
    live = select(Bead.id).where(Bead.id == Agent.current_bead_id, Bead.status == "in_progress",
                                 Bead.assigned_to == Agent.id).exists()
    silent = (Agent.last_heartbeat_at.is_(None)) | (Agent.last_heartbeat_at < cutoff)
    zombies = db.session.execute(select(Agent.id, Agent.project_id)
                                 .where(Agent.status == "working", ~live, silent).limit(BATCH)).all()
    for agent_id, project_id in zombies:
        db.session.execute(update(Agent).where(Agent.id == agent_id, Agent.status == "working")
                           .values(status="idle", current_bead_id=None, updated_at=now)
                           .execution_options(synchronize_session=False))
        db.session.execute(update(Run).where(Run.agent_id == agent_id, Run.status == "running")
                           .values(status="abandoned", terminal_reason="agent reset by Ralph", finished_at=now)
                           .execution_options(synchronize_session=False))
        db.session.commit()
        _action("agent_reset", f"agent {agent_id} had no heartbeat: reset to idle", project_id=project_id,
                agent_id=agent_id)
    return [z[0] for z in zombies]


def reclaim_expired_leases(now: datetime | None = None, settings: RalphSettings | None = None
                           ) -> tuple[list[int], list[tuple[int, int]]]:
    """(reopened bead ids, resumed (run id, project id)) for in-progress beads whose lease ran out.

    Every UPDATE re-checks the lease and the fencing token, so a worker that renewed in the meantime
    keeps its bead. A resumed run continues from its last applied step (the step ledger makes the
    redelivery safe); after `max_resumes` the bead is reopened for a fresh run instead.
    """
    now, settings = now or utcnow(), settings or RalphSettings()
    expired = db.session.execute(
        select(Bead.id, Bead.assigned_to, Bead.project_id, Bead.fencing_token)
        .where(Bead.status == "in_progress", Bead.lease_expires_at < now).order_by(Bead.id).limit(BATCH)).all()
    reopened: list[int] = []
    resumed: list[tuple[int, int]] = []
    for bead_id, agent_id, project_id, token in expired:
        run = db.session.scalar(select(Run).where(Run.bead_id == bead_id, Run.status == "running",
                                                  Run.fencing_token == token))
        fence = (Bead.id == bead_id, Bead.status == "in_progress", Bead.lease_expires_at < now,
                 Bead.fencing_token == token)
        if run is not None and run.resumes < settings.max_resumes:
            if db.session.execute(update(Bead).where(*fence).values(
                    lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
                    .execution_options(synchronize_session=False)).rowcount:
                run.resumes += 1
                db.session.commit()
                resumed.append((run.id, project_id))
                _action("run_resumed", f"bead {bead_id} lease expired: run {run.id} resumed from step "
                        f"{run.iterations + 1}", project_id=project_id, bead_id=bead_id, agent_id=agent_id)
            continue
        if not db.session.execute(update(Bead).where(*fence).values(
                status="open", assigned_to=None, lease_expires_at=None, updated_at=now,
                status_reason="lease expired: reclaimed by Ralph").execution_options(synchronize_session=False)
                ).rowcount:
            continue
        if run is not None:
            run.status, run.terminal_reason, run.finished_at = "abandoned", "lease expired too often", now
        if agent_id is not None:
            db.session.execute(update(Agent).where(Agent.id == agent_id, Agent.current_bead_id == bead_id)
                               .values(status="idle", current_bead_id=None, updated_at=now)
                               .execution_options(synchronize_session=False))
        db.session.commit()
        reopened.append(bead_id)
        _action("bead_reopened", f"bead {bead_id} lease expired; reopened", project_id=project_id,
                bead_id=bead_id, agent_id=agent_id)
        emit("bead.status_changed", project_id=project_id, bead_id=bead_id,
             data={"from": "in_progress", "to": "open", "reason": "lease expired"})
    return reopened, resumed


def end_leases_of_dead_turns(redis_client, now: datetime) -> list[int]:
    """Runs whose loop turn lost its worker mid-way (app/services/turn_watch.py: the turn's lock lapsed, its step
    never applied, its worker does not name it): their bead's lease ends now (fenced), for reclaim_expired_leases
    to resume them in this same tick."""
    try:
        lapsed = turn_watch.lapsed_turns(redis_client)
    except redis.RedisError as exc:  # the leases still run out: only the shortcut is missed
        log.warning("dead turns not looked for (Redis unavailable: %s)", exc)
        return []
    runs = {turn.run_id: db.session.get(Run, turn.run_id) for turn in lapsed}
    stuck = [turn for turn in lapsed if (run := runs[turn.run_id]) is not None and run.status == "running"
             and run.iterations < turn.seq]
    taking = turn_watch.turns_of(current_app.extensions["celery"], {t.node for t in stuck}) if stuck else {}
    ended = []
    for turn in lapsed:
        run = runs[turn.run_id]
        if turn in stuck:
            if taking is None or turn.run_id in taking.get(turn.node, ()):
                continue  # the broker away, or a turn that lost its lock (Redis was away) but goes on: next tick
            if db.session.execute(
                    update(Bead).where(Bead.id == run.bead_id, Bead.status == "in_progress",
                                       Bead.fencing_token == run.fencing_token, Bead.lease_expires_at >= now,
                                       exists().where(Run.id == turn.run_id, Run.status == "running",
                                                      Run.iterations < turn.seq))  # still stuck, as read
                    .values(lease_expires_at=now - timedelta(microseconds=1))
                    .execution_options(synchronize_session=False)).rowcount:
                db.session.commit()
                ended.append(turn.run_id)
                _action("turn_lost", f"run {turn.run_id}: worker {turn.node} (pid {turn.pid}) died during step "
                        f"{turn.seq}; the run resumes now rather than when its lease runs out",
                        project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id)
        db.session.rollback()
        try:
            turn_watch.forget(redis_client, turn)
        except redis.RedisError:
            pass
    return ended


ORPHAN_GRACE = timedelta(seconds=30)  # a loop that saw its bead change finishes its own run within this


def end_orphaned_runs(now: datetime) -> list[int]:
    """Runs still `running` although their bead was closed, blocked, reopened or claimed again a while ago
    (a person closed a bead paused for pairing: no loop step was left to notice) end as abandoned."""
    moved_on = (Bead.status != "in_progress") | (Bead.fencing_token != Run.fencing_token)
    orphans = db.session.execute(
        select(Run.id, Run.bead_id, Run.project_id, Run.agent_id).join(Bead, Bead.id == Run.bead_id)
        .where(Run.status == "running", moved_on, Bead.updated_at < now - ORPHAN_GRACE).limit(BATCH)).all()
    ended = []
    for run_id, bead_id, project_id, agent_id in orphans:
        if db.session.execute(update(Run).where(Run.id == run_id, Run.status == "running").values(
                status="abandoned", terminal_reason="its bead was closed, blocked or reassigned meanwhile",
                finished_at=now, paused_by=None, paused_at=None)
                .execution_options(synchronize_session=False)).rowcount:
            ended.append(run_id)
            db.session.commit()
            _action("run_ended", f"run {run_id} ended: bead {bead_id} had moved on", project_id=project_id,
                    bead_id=bead_id, agent_id=agent_id)
            emit("run.finished", project_id=project_id, bead_id=bead_id, agent_id=agent_id,
                 data={"run_id": run_id, "status": "abandoned", "reason": "its bead moved on"})
    db.session.commit()
    return ended


def block_error_loops(settings: RalphSettings) -> list[int]:
    """Open beads dispatched over and over without finishing are blocked for the triage persona."""
    looping = db.session.scalars(select(Bead.id).where(Bead.status == "open", Bead.type != "decision",
                                                       Bead.dispatch_count >= settings.max_dispatches)
                                 .limit(BATCH)).all()
    for bead_id in looping:
        bead = beads.block_bead(bead_id, f"dispatched {settings.max_dispatches} times without finishing",
                                kind="loop")
        _action("bead_blocked", f"bead {bead_id} blocked: {bead.status_reason}", project_id=bead.project_id,
                bead_id=bead_id)
    return list(looping)


def recover_provider_blocks(now: datetime, settings: RalphSettings, provider_healthy: bool) -> list[int]:
    """Unblock provider-blocked beads once the provider is healthy and they have waited long enough."""
    if not provider_healthy:
        return []
    transient = now - timedelta(seconds=settings.recover_transient_seconds)
    auth = now - timedelta(seconds=settings.recover_auth_seconds)
    due = db.session.scalars(select(Bead.id).where(
        Bead.status == "blocked",
        ((Bead.block_kind.in_(("provider", "rate_limit"))) & (Bead.updated_at <= transient))
        | ((Bead.block_kind == "auth") & (Bead.updated_at <= auth))).limit(BATCH)).all()
    for bead_id in due:
        bead = beads.unblock_bead(bead_id, "provider healthy again: retried by Ralph")
        _action("bead_recovered", f"bead {bead_id} unblocked: the provider is healthy again",
                project_id=bead.project_id, bead_id=bead_id)
    return list(due)


def run_tick(redis_client, settings: RalphSettings | None = None, *, provider_healthy: bool = True,
             now: datetime | None = None) -> dict:
    """One Ralph pass; the summary is also the heartbeat (in Redis) that the UI and probes read."""
    settings, now = settings or RalphSettings(), now or utcnow()
    started = time.perf_counter()
    zombies = reset_zombie_agents(now, settings)
    lost = end_leases_of_dead_turns(redis_client, now)
    reopened, resumed = reclaim_expired_leases(now, settings)
    orphaned = end_orphaned_runs(now)
    blocked = block_error_loops(settings)
    recovered = recover_provider_blocks(now, settings, provider_healthy)
    released = budgets.release_stale_reservations(settings.reservation_seconds, now)
    if released:
        _action("reservations_released", f"{released} budget reservations of LLM calls that never settled released")
    summary = {"ts": now.isoformat(), "zombies": zombies, "lost_turns": lost, "reclaimed": reopened,
               "resumed": [r for r, _ in resumed], "blocked": blocked, "recovered": recovered,
               "orphaned_runs": orphaned, "reservations_released": released,
               "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
    redis_client.set(HEARTBEAT_KEY, json.dumps(summary), ex=300)
    emit("ralph.tick", data={"duration_ms": summary["duration_ms"], "actions": sum(
        len(summary[k]) for k in ("zombies", "lost_turns", "reclaimed", "resumed", "blocked", "recovered",
                                  "orphaned_runs"))})
    summary["resume"] = resumed  # (run, project) pairs for the task to enqueue
    return summary


def last_heartbeat(redis_client) -> dict | None:
    raw = redis_client.get(HEARTBEAT_KEY)
    return json.loads(raw) if raw else None
