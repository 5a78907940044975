"""One pair-programming turn: the person's message and the run's conversation go to the LLM, the reply
streams back piece by piece, is stored, and its actions run with the loop's own action code.

Crash safety as in the loop: the reply is stored (`llm_done`) before its actions run and the step becomes
`applied` with the run's iteration count. Events: `pair.started`, `pair.delta` (batched tokens),
`step.finished` (the bead's timeline) and `pair.finished`; the caller's `on_event(name, data)` gets
`chunk` {text} per piece, `actions` {results}, then `done` {step} or `error` {code, message}.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.llm import LLMClient, LLMError, trim_messages
from app.models import Agent, Bead, Project, Run, Step, utcnow
from app.services import beads, metering, prompts, workspace
from app.services.action_parser import MAX_REPLY_CHARS, parse_reply
from app.services.actions import ActionContext, apply_actions
from app.services.errors import ServiceError
from app.services.events import emit
from app.services.loop_common import LoopSettings, finish_run, token_batcher, workspace_for
from app.services.loop_llm import OVERSIZE_KEEP_CHARS
from app.services.pair import PairTurn, begin_turn

log = logging.getLogger("loom.pair")
OnEvent = Callable[[str, dict], None]
EVENT_OUTPUT_CHARS = 2_000  # of each action's output, in the pair.finished event


def _emit(turn: PairTurn, kind: str, data: dict) -> None:
    emit(kind, project_id=turn.project_id, bead_id=turn.bead_id, agent_id=turn.agent_id,
         data={"run_id": turn.run_id, "seq": turn.seq, "author": turn.author, **data})


def _relay(turn: PairTurn, on_event: OnEvent) -> Callable[[str], None]:
    """Each streamed piece goes to on_event at once and to the bus as `pair.delta`, at most ~10 events a second."""
    to_bus = token_batcher(lambda text: _emit(turn, "pair.delta", {"text": text}))

    def on_delta(piece: str) -> None:
        on_event("chunk", {"text": piece})
        to_bus(piece)

    on_delta.flush = to_bus.flush  # type: ignore[attr-defined]
    return on_delta


def _fail(turn: PairTurn, on_event: OnEvent, code: str, message: str) -> None:
    on_event("error", {"code": code, "message": message})
    _emit(turn, "pair.finished", {"status": "error", "error": {"code": code, "message": message[:1000]}})


def _messages(run: Run, turn: PairTurn, message: str, settings: LoopSettings) -> list[dict]:
    applied = db.session.scalars(select(Step).where(Step.run_id == run.id, Step.status == "applied")
                                 .order_by(Step.seq)).all()
    request = prompts.pair_message(turn.author, message)
    budget = int((run.counters or {}).get("context_chars", settings.context_chars))
    history = prompts.conversation(run.system_prompt, run.task_prompt, list(applied))
    return trim_messages(history, max(0, budget - len(request["content"]))) + [request]


def _still_ours(run: Run, hold_seconds: int) -> bool:
    """Fenced: the bead is still this run's claim; its lease is renewed for the hold and the agent's heartbeat."""
    now = utcnow()
    renewed = db.session.execute(
        update(Bead).where(Bead.id == run.bead_id, Bead.fencing_token == run.fencing_token,
                           Bead.status == "in_progress", Bead.assigned_to == run.agent_id)
        .values(lease_expires_at=now + timedelta(seconds=hold_seconds))
        .execution_options(synchronize_session=False)).rowcount
    if renewed:
        db.session.execute(update(Agent).where(Agent.id == run.agent_id).values(last_heartbeat_at=now)
                           .execution_options(synchronize_session=False))
    db.session.commit()
    return bool(renewed)


def _store_reply(turn: PairTurn, message: str, completion) -> Step | None:
    oversize = len(completion.content) > MAX_REPLY_CHARS
    step = Step(run_id=turn.run_id, bead_id=turn.bead_id, seq=turn.seq, status="llm_done", kind="pair",
                author=turn.author, request=message, attempts=1, claimed_at=utcnow(),
                response=completion.content[:OVERSIZE_KEEP_CHARS] if oversize else completion.content,
                parse_error=f"reply too large (more than {MAX_REPLY_CHARS} characters: read no further)"
                if oversize else None,
                model=completion.model, prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens, latency_ms=round(completion.latency_ms, 1))
    db.session.add(step)
    try:
        db.session.commit()
    except IntegrityError:  # the loop stored this turn first (its lock had expired): it carries on
        db.session.rollback()
        return None
    return step


def _apply(run: Run, step: Step, settings: LoopSettings) -> tuple[list[dict], list, str | None, str | None]:
    """(results, actions, terminal, terminal reason): the loop's action code in the bead's worktree."""
    parsed = parse_reply(step.response)
    if step.parse_error:
        parsed.actions, parsed.notes, parsed.error = [], None, step.parse_error
    if parsed.error:
        results, terminal, reason = [{"type": "reply", "status": "error", "output": parsed.error}], None, None
    else:
        bead, project = db.session.get(Bead, run.bead_id), db.session.get(Project, run.project_id)
        agent = db.session.get(Agent, run.agent_id)
        ctx = ActionContext(run_id=run.id, seq=step.seq, bead_id=bead.id, project_id=project.id,
                            agent_name=agent.name if agent else "agent",
                            workspace=workspace_for(run, project, settings),
                            data_dir=settings.data_dir, default_branch=project.default_branch,
                            git_strategy=project.git_strategy, acceptance=bead.acceptance,
                            command_timeout=settings.command_timeout)
        outcome = apply_actions(ctx, parsed.actions)
        results, terminal, reason = outcome.results, outcome.terminal, outcome.terminal_reason
    step, run = db.session.get(Step, step.id), db.session.get(Run, run.id)
    step.status, step.results, step.applied_at = "applied", results, utcnow()
    step.actions = parsed.actions if len(json.dumps(parsed.actions, default=str)) < 200_000 else []
    step.notes, step.parse_error = parsed.notes, parsed.error
    run.iterations = step.seq
    run.prompt_tokens += step.prompt_tokens
    run.completion_tokens += step.completion_tokens
    db.session.commit()
    return results, parsed.actions, terminal, reason


def _announce(turn: PairTurn, step: Step, results: list[dict], actions: list) -> None:
    kinds = [a.get("type") for a in actions if isinstance(a, dict)]
    emit("step.finished", project_id=turn.project_id, bead_id=turn.bead_id, agent_id=turn.agent_id,
         data={"run_id": turn.run_id, "seq": step.seq, "kind": "pair", "author": turn.author, "actions": kinds,
               "results": [r["status"] for r in results], "notes": (step.notes or "")[:1000],
               "prompt_tokens": step.prompt_tokens, "completion_tokens": step.completion_tokens,
               "latency_ms": step.latency_ms, "parse_error": step.parse_error})
    _emit(turn, "pair.finished", {"status": "ok", "notes": (step.notes or "")[:4000], "actions": kinds,
                                  "parse_error": step.parse_error,
                                  "results": [{"type": r.get("type"), "status": r.get("status"),
                                               "output": str(r.get("output", ""))[:EVENT_OUTPUT_CHARS]}
                                              for r in results]})


def take_turn(turn: PairTurn, message: str, llm: LLMClient, settings: LoopSettings, hold_seconds: int,
              on_event: OnEvent) -> Step | None:
    """Run one prepared pair turn and release its lock; the applied step, or None after an `error` event."""
    try:
        return _take_turn(turn, message, llm, settings, hold_seconds, on_event)
    finally:
        turn.lock.release()


def _take_turn(turn: PairTurn, message: str, llm: LLMClient, settings: LoopSettings, hold_seconds: int,
               on_event: OnEvent) -> Step | None:
    run = db.session.get(Run, turn.run_id)
    messages = _messages(run, turn, message, settings)
    meter = metering.before_call(run, turn.seq, messages, llm, source="pair")  # the same budgets as the loop
    if meter.refusal is not None:
        refused = metering.refuse(meter)  # a final refusal blocks the bead (kind "budget"), as in the loop
        _fail(turn, on_event, "budget", refused or "the budget is taken by calls in flight; send it again shortly")
        return None
    _emit(turn, "pair.started", {"message": message[:4000]})
    db.session.commit()  # hold no transaction (or pooled connection) while waiting on the LLM
    relay = _relay(turn, on_event)
    try:
        completion = llm.chat(messages, stream=True, on_delta=relay)
    except LLMError as exc:
        relay.flush()  # type: ignore[attr-defined]
        metering.after_error(meter, exc)  # recorded (source "pair"), the reservation settled at zero
        _fail(turn, on_event, f"llm_{exc.kind}", f"the LLM call failed ({exc.kind}): {exc.message}"[:2000])
        return None
    relay.flush()  # type: ignore[attr-defined]
    metering.after_call(meter, completion)  # the LLMRequest row (source "pair") and the budget settlement
    step = _store_reply(turn, message, completion)
    if step is None:
        _fail(turn, on_event, "busy", "the loop took this turn meanwhile; send your message again")
        return None
    run = db.session.get(Run, turn.run_id)
    if not _still_ours(run, hold_seconds):
        finish_run(run, "abandoned", "the bead was reclaimed, closed or reassigned during a pair turn",
                   release_hold=True)
        _fail(turn, on_event, "stale", "the bead was reclaimed, closed or reassigned meanwhile; nothing was run")
        return None
    try:
        results, actions, terminal, reason = _apply(run, step, settings)
    except workspace.WorkspaceError as exc:  # as in the loop: the repository could not be prepared
        db.session.rollback()
        beads.block_bead(turn.bead_id, f"workspace: {exc}"[:1000], kind="workspace")
        finish_run(db.session.get(Run, turn.run_id), "failed", f"workspace: {exc}"[:1000], release_hold=True)
        _fail(turn, on_event, "workspace", f"workspace: {exc}"[:2000])
        return None
    except ServiceError as exc:
        db.session.rollback()
        finish_run(db.session.get(Run, turn.run_id), "failed", exc.message, release_hold=True)
        _fail(turn, on_event, exc.code, exc.message)
        return None
    on_event("actions", {"results": results, "actions": [a.get("type") for a in actions if isinstance(a, dict)]})
    step = db.session.get(Step, step.id)
    _announce(turn, step, results, actions)
    run = db.session.get(Run, turn.run_id)
    if terminal == "done":
        beads.close_bead(turn.bead_id, reason)
        finish_run(run, "finished", f"done: {reason}", release_hold=True)
    elif terminal == "escalated":
        finish_run(run, "finished", reason or "escalated", release_hold=True)
    on_event("done", {"step": step.to_dict()})
    return step


def pair_turn(bead_id: int | None, agent_id: int | None, message: str, user: str, llm: LLMClient,
              settings: LoopSettings, hold_seconds: int, on_event: OnEvent) -> Step | None:
    """The whole pair turn in one call: hold the bead's run, take the turn, release (refusals raise 4xx)."""
    turn = begin_turn(bead_id, agent_id, user, settings, hold_seconds)
    return take_turn(turn, message, llm, settings, hold_seconds, on_event)
