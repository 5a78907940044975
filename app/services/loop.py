"""The bead action loop, one LLM turn per call: start a run, then `run_step` until the run ends.

Crash safety: a step is written twice. The LLM reply is stored first (`llm_done`); its actions run
and the step becomes `applied` together with the run's iteration count. A redelivered step finds
its row and never asks the LLM twice; effects kept in the database carry idempotency keys; file
writes and commits are idempotent. Every write first checks the fencing token, so a worker whose
lease was reclaimed stops without touching the bead.

Here: a turn's checks (fencing, lease, pause, limits) and applying the reply. Asking the LLM and storing its reply
is loop_llm.py; the settings, a turn's outcome and ending a run, shared with pair turns, are loop_common.py.
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import lazyload

from app.extensions import db
from app.llm import LLMClient
from app.logging_setup import log_context
from app.models import Agent, Bead, Persona, Project, Run, Step, utcnow
from app.services import beads, bead_graph, loop_llm, prompts, turn_watch, turns, workspace
from app.services.action_parser import parse_reply
from app.services.actions import ActionContext, apply_actions
from app.services.errors import ServiceError
from app.services.events import emit
from app.services.loop_common import LoopSettings, StepOutcome, finish_run, workspace_for, worktree_ready
from app.services.loop_limits import LIMITS, check_limits

__all__ = ["LoopSettings", "StepOutcome", "run_step", "start_run"]  # the settings and outcome live in loop_common

log = logging.getLogger("loom.loop")


def start_run(bead_id: int, agent_id: int, settings: LoopSettings, max_running: int | None = None) -> Run:
    """Claim the bead for the agent and open a Run (raises Conflict when someone else won; AtCapacity when
    `max_running` beads already run)."""
    bead = bead_graph.claim_bead(bead_id, agent_id, settings.lease_seconds, max_running)
    agent = db.session.get(Agent, agent_id)
    persona = db.session.get(Persona, agent.persona)
    project = db.session.get(Project, bead.project_id)
    blocked_by, _ = bead_graph.edges_of([bead.id])
    run = Run(bead_id=bead.id, agent_id=agent.id, project_id=bead.project_id, fencing_token=bead.fencing_token,
              system_prompt=prompts.system_prompt(agent, persona, project),
              task_prompt=prompts.task_prompt(bead, blocked_by.get(bead.id, [])), counters={})
    db.session.add(run)
    db.session.flush()
    started = {"project_id": run.project_id, "bead_id": bead.id, "agent_id": agent.id,
               "data": {"run_id": run.id, "persona": agent.persona}}  # read before the commit expires them
    db.session.commit()
    emit("run.started", **started)
    return run


def _bead_if_still_ours(run: Run) -> Bead | None:
    """The run's bead, read afresh, if it is in progress with this run's agent and fencing token (its lease was
    not reclaimed); else None. Its tags are loaded only if something reads them."""
    bead = db.session.scalar(select(Bead).where(Bead.id == run.bead_id)
                             .options(lazyload(Bead.tag_rows)).execution_options(populate_existing=True))
    if bead is None or (bead.status, bead.fencing_token, bead.assigned_to) != ("in_progress", run.fencing_token,
                                                                                run.agent_id):
        return None
    return bead


HEARTBEAT_EVERY = timedelta(seconds=30)


def _renew_lease(run: Run, agent: Agent, lease_seconds: int) -> bool:
    """Extend the bead's lease (fenced); refresh the agent's heartbeat when it is older than 30 s."""
    now = utcnow()
    renewed = db.session.execute(
        update(Bead).where(Bead.id == run.bead_id, Bead.fencing_token == run.fencing_token,
                           Bead.status == "in_progress")
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)).rowcount
    if renewed and (agent.last_heartbeat_at is None or now - agent.last_heartbeat_at > HEARTBEAT_EVERY):
        db.session.execute(update(Agent).where(Agent.id == run.agent_id).values(last_heartbeat_at=now)
                           .execution_options(synchronize_session=False))
    return bool(renewed)


def _apply(run: Run, step: Step, project: Project, bead: Bead, agent: Agent, settings: LoopSettings) -> StepOutcome:
    parsed = parse_reply(step.response)
    if step.parse_error:  # decided when the reply arrived (too large to keep whole)
        parsed.actions, parsed.notes, parsed.error = [], None, step.parse_error
    ctx = ActionContext(run_id=run.id, seq=step.seq, bead_id=bead.id, project_id=project.id, agent_name=agent.name,
                        workspace=workspace_for(run, project, settings), data_dir=settings.data_dir,
                        default_branch=project.default_branch, git_strategy=project.git_strategy,
                        acceptance=bead.acceptance, command_timeout=settings.command_timeout,
                        sandbox=settings.sandbox)
    if parsed.error:
        results, invalid, mutated, terminal, reason = [{"type": "reply", "status": "error",
                                                        "output": parsed.error}], 0, False, None, None
    else:
        outcome = apply_actions(ctx, parsed.actions)
        results, invalid, mutated = outcome.results, outcome.invalid, outcome.mutated
        terminal, reason = outcome.terminal, outcome.terminal_reason
    step = db.session.get(Step, step.id)
    run = db.session.get(Run, run.id)
    step.status, step.results, step.applied_at = "applied", results, utcnow()
    step.actions = parsed.actions if len(json.dumps(parsed.actions, default=str)) < 200_000 else []
    step.notes, step.parse_error = parsed.notes, parsed.error
    run.iterations = step.seq
    run.prompt_tokens += step.prompt_tokens
    run.completion_tokens += step.completion_tokens
    fingerprint = hashlib.sha256(json.dumps(parsed.actions, sort_keys=True, default=str).encode()).hexdigest()
    stop = check_limits(run, parse_failed=bool(parsed.error), invalid=invalid, mutated=mutated,
                        fingerprint=fingerprint, max_iterations=settings.max_iterations)
    person_holds = db.session.scalar(select(Run.paused_by).where(Run.id == run.id)) is not None  # paused meanwhile?
    db.session.commit()
    emit("step.finished", project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id,
         data={"run_id": run.id, "seq": step.seq, "actions": [a.get("type") for a in parsed.actions
                                                              if isinstance(a, dict)],
               "results": [r["status"] for r in results], "notes": (parsed.notes or "")[:1000],
               "prompt_tokens": step.prompt_tokens, "completion_tokens": step.completion_tokens,
               "latency_ms": step.latency_ms, "parse_error": parsed.error})
    if terminal == "done":
        beads.close_bead(run.bead_id, reason)
        finish_run(run, "finished", f"done: {reason}")
        return StepOutcome(False, reason="done", project_id=run.project_id)
    if terminal == "escalated":
        finish_run(run, "finished", reason or "escalated")
        return StepOutcome(False, reason="escalated", project_id=run.project_id)
    if stop is not None:
        beads.block_bead(run.bead_id, f"loop stopped: {LIMITS.get(stop, stop)} ({stop})", kind="loop")
        finish_run(run, "failed", stop)
        return StepOutcome(False, reason=stop, project_id=run.project_id)
    return StepOutcome(True, project_id=run.project_id, dedicated=project.dedicated, person_holds=person_holds)


def run_step(run_id: int, llm: LLMClient, settings: LoopSettings) -> StepOutcome:
    """Exactly one turn of the run: ask the LLM (unless a stored reply awaits), apply, record, decide.

    Within the step, objects are not reloaded after each of its commits (the fencing checks read the
    database directly); everything is expired once at the start so nothing stale comes in.
    """
    session = db.session()
    session.expire_all()
    previous, session.expire_on_commit = session.expire_on_commit, False
    try:
        return _run_step(run_id, llm, settings)
    finally:
        session.expire_on_commit = previous


MAX_STEP_ATTEMPTS = 3


def _claim_stored_step(step: Step, settings: LoopSettings, exclusive: bool) -> StepOutcome | None:
    """Take over applying a stored reply; None when we may go on. With the run's lock (`exclusive`) nobody
    else can be applying it (a live applier holds that lock; a dead one's lapsed within 30 s): we take it at
    once, e.g. the retry of this very step after the database blinked, or Ralph resuming a killed worker's run.
    Without the lock, another worker applying it recently keeps it (we stop: no second chain). A reply whose
    application died 3 times is parked."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.command_timeout * 2 + 60)
    free = (Step.claimed_at.is_(None)) | (Step.claimed_at < stale)
    taken = db.session.execute(
        update(Step).where(Step.id == step.id, Step.status == "llm_done", *(() if exclusive else (free,)))
        .values(attempts=Step.attempts + 1, claimed_at=now).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if not taken:
        return StepOutcome(False, reason="another worker is applying this step")
    db.session.refresh(step)
    if step.attempts > MAX_STEP_ATTEMPTS:
        run = db.session.get(Run, step.run_id)
        step.status = "failed"
        db.session.commit()
        reason = f"step {step.seq} failed {MAX_STEP_ATTEMPTS} times while its actions ran (parked)"
        beads.block_bead(run.bead_id, reason, kind="loop")
        finish_run(run, "failed", reason)
        return StepOutcome(False, reason="poison step", project_id=run.project_id)
    return None


def _run_step(run_id: int, llm: LLMClient, settings: LoopSettings) -> StepOutcome:
    """A turn under the run's lock (shared with pair turns); a run a person holds parks instead (see turns)."""
    lock = turns.RunLock(run_id, "loop", keep_lease=turns.LeaseKeeper(db.engine, run_id, settings.lease_seconds))
    if not lock.acquire(turns.LOOP_WAIT_S) and lock.holder() in turns.PERSON_KINDS:
        return StepOutcome(True, delay_s=turns.PERSON_POLL_S, reason="waiting for a pair turn",
                           project_id=turns.project_of(run_id))
    try:  # not taken for another reason (a duplicate delivery, Redis down): the step ledger guards, as before
        outcome = _take_turn(run_id, llm, settings, exclusive=lock.held)  # parks at once a run a person holds
        # A person who paused the run during this turn (seen before its last commit, else read now) gets it.
        if outcome.next_step and outcome.person_holds is not False and turns.park_if_held(run_id):
            return StepOutcome(False, reason="paused for pairing", project_id=outcome.project_id)
        return outcome
    finally:
        if lock.held:
            turn_watch.end_turn(run_id)
        lock.release()


def _take_turn(run_id: int, llm: LLMClient, settings: LoopSettings, exclusive: bool = False) -> StepOutcome:
    # One round trip for the run, its agent, its project and the fencing facts of its bead.
    row = db.session.execute(
        select(Run, Agent, Project, Bead.status, Bead.fencing_token, Bead.assigned_to)
        .outerjoin(Agent, Agent.id == Run.agent_id).join(Project, Project.id == Run.project_id)
        .join(Bead, Bead.id == Run.bead_id).where(Run.id == run_id)
    ).first()
    if row is None or row[0].status != "running":
        return StepOutcome(False, reason="run not active")
    bead_id, agent_id, project_id = row[0].bead_id, row[0].agent_id, row[0].project_id
    with log_context(bead_id=bead_id, agent_id=agent_id, project_id=project_id):
        outcome = _turn(row, llm, settings, exclusive)
    outcome.bead_id, outcome.agent_id, outcome.project_id = bead_id, agent_id, outcome.project_id or project_id
    return outcome


def _turn(row, llm: LLMClient, settings: LoopSettings, exclusive: bool) -> StepOutcome:
    """The turn of a running run (`row`: the run, its agent and project, and its bead's fencing facts)."""
    run, agent, project = row[0], row[1], row[2]
    run_id = run.id
    if run.paused_by:  # a person holds the run (pairing): the loop stops until they hand it back
        turns.park(run.id, run.counters)
        return StepOutcome(False, reason="paused for pairing")
    if tuple(row[3:]) != ("in_progress", run.fencing_token, run.agent_id):
        finish_run(run, "abandoned", "the bead was reclaimed, closed or reassigned while this run was away")
        return StepOutcome(False, reason="stale", project_id=run.project_id)
    if agent is None or agent.status == "paused":
        beads.reopen_bead(run.bead_id, "agent paused: bead released")
        finish_run(run, "stopped", "agent paused")
        return StepOutcome(False, reason="paused", project_id=run.project_id)
    seq = run.iterations + 1
    if seq > settings.max_iterations:
        beads.block_bead(run.bead_id, f"loop stopped: {LIMITS['max_iterations']} ({settings.max_iterations})",
                         kind="loop")
        finish_run(run, "failed", "max_iterations")
        return StepOutcome(False, reason="max_iterations", project_id=run.project_id)
    if not _renew_lease(run, agent, settings.lease_seconds):
        db.session.rollback()
        finish_run(run, "abandoned", "lease lost")
        return StepOutcome(False, reason="stale", project_id=run.project_id)
    if exclusive:  # under the run's lock: Ralph resumes the run at once if this worker dies mid-turn
        turn_watch.note_turn(run_id, seq)
    steps = db.session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.seq)).all()
    step = next((s for s in steps if s.seq == seq), None)
    if step is None and not worktree_ready(run, project, settings):  # the bead's first turn: before any LLM call
        db.session.commit()  # (the lease renewal) no transaction held open over a clone
        try:
            workspace_for(run, project, settings)
        except workspace.WorkspaceError as exc:
            return _workspace_failed(run_id, exc)
    if step is None:
        asked = loop_llm.ask_llm(run, seq, [s for s in steps if s.status == "applied"], llm, settings)
        if isinstance(asked, StepOutcome):
            return asked
        step = asked
    else:  # a stored reply waits (a redelivery, or Ralph resuming the run): take it over, or stand aside
        claimed = _claim_stored_step(step, settings, exclusive)
        if claimed is not None:
            return claimed
    run = db.session.get(Run, run_id)
    bead = _bead_if_still_ours(run)  # fencing check right before any effect
    if bead is None:
        finish_run(run, "abandoned", "lease lost before applying the reply")
        return StepOutcome(False, reason="stale", project_id=run.project_id)
    try:
        return _apply(run, step, project, bead, agent, settings)
    except workspace.WorkspaceError as exc:
        return _workspace_failed(run_id, exc)
    except ServiceError as exc:  # e.g. the bead vanished mid-step
        db.session.rollback()
        finish_run(db.session.get(Run, run_id), "failed", exc.message)
        return StepOutcome(False, reason=exc.message, project_id=run.project_id)


def _workspace_failed(run_id: int, exc: workspace.WorkspaceError) -> StepOutcome:
    """The repository or the bead's worktree could not be prepared: a person must look (no LLM call is paid for
    it when this happens on the first turn)."""
    db.session.rollback()
    run = db.session.get(Run, run_id)
    beads.block_bead(run.bead_id, f"workspace: {exc}"[:1000], kind="workspace")
    finish_run(run, "failed", f"workspace: {exc}"[:1000])
    return StepOutcome(False, reason="workspace", project_id=run.project_id)
