"""The LLM half of a loop turn: the conversation so far, the budget hold, the streamed reply relayed as events,
and the reply stored as an `llm_done` step (with its LLMRequest row) before any of its actions runs."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.llm import LLMClient, LLMError, trim_messages
from app.models import Run, Step, utcnow
from app.services import analytics, beads, metering, prompts
from app.services.action_parser import MAX_REPLY_CHARS
from app.services.events import emit
from app.services.loop_common import LoopSettings, StepOutcome, finish_run, token_batcher
from app.services.loop_limits import record_llm_error

OVERSIZE_KEEP_CHARS = 65_536  # of a reply over the parser's limit, only the start is kept


def delta_publisher(run: Run, seq: int) -> Callable[[str], None]:
    """Relay streamed tokens as `llm.delta` events, batched to at most ~10 events a second."""
    return token_batcher(lambda text: emit("llm.delta", project_id=run.project_id, bead_id=run.bead_id,
                                           agent_id=run.agent_id, data={"run_id": run.id, "seq": seq, "text": text}))


def ask_llm(run: Run, seq: int, applied: list[Step], llm: LLMClient, settings: LoopSettings) -> Step | StepOutcome:
    """One LLM call after the `applied` steps; stores the reply as a `llm_done` Step. Errors go to the bead's
    error history."""
    budget = int((run.counters or {}).get("context_chars", settings.context_chars))
    messages = trim_messages(prompts.conversation(run.system_prompt, run.task_prompt, applied), budget)
    budget_ids = metering.budget_ids(run)  # read in the turn's first transaction, not one of its own
    emit("step.started", project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id,
         data={"run_id": run.id, "seq": seq})
    db.session.commit()  # hold no transaction (or pooled connection) while waiting on the LLM
    meter = metering.before_call(run, seq, messages, llm, budget_ids=budget_ids)  # refused calls are never made
    if meter.refusal is not None:
        if (refused := metering.refuse(meter)) is None:  # only calls in flight fill the budget: wait for them
            return StepOutcome(True, delay_s=metering.BUSY_RETRY_S, reason="budget busy", project_id=run.project_id)
        finish_run(db.session.get(Run, run.id), "failed", refused)
        return StepOutcome(False, reason=refused, project_id=run.project_id)
    on_delta = delta_publisher(run, seq)
    try:
        # The call, retries included, ends well inside the lease renewed for this turn: a provider that hangs or
        # trickles forever gives a `timeout` error here, not a second run of the bead started by Ralph meanwhile.
        completion = llm.chat(messages, stream=True, on_delta=on_delta, deadline_s=settings.lease_seconds * 0.8)
    except LLMError as exc:
        metering.after_error(meter, exc)  # recorded, and the reservation settled at zero
        verdict = record_llm_error(run, seq, exc, budget, settings.error_backoff_s)
        emit("step.finished", project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id,
             data={"run_id": run.id, "seq": seq, "error": {"kind": exc.kind, "message": verdict.reason[:300]}})
        if verdict.block_kind is None:
            return StepOutcome(True, delay_s=verdict.retry_in_s, reason=verdict.reason, project_id=run.project_id)
        beads.block_bead(run.bead_id, verdict.reason[:1000], kind=verdict.block_kind)
        finish_run(db.session.get(Run, run.id), "failed", verdict.reason[:1000])
        return StepOutcome(False, reason=verdict.reason, project_id=run.project_id)
    on_delta.flush()  # type: ignore[attr-defined]
    recorded = metering.after_call(meter, completion, commit=False)  # committed with the reply, below
    oversize = len(completion.content) > MAX_REPLY_CHARS
    step = Step(run_id=run.id, bead_id=run.bead_id, seq=seq, status="llm_done", request=messages[-1]["content"],
                attempts=1, claimed_at=utcnow(),
                response=completion.content[:OVERSIZE_KEEP_CHARS] if oversize else completion.content,
                parse_error=f"reply too large (more than {MAX_REPLY_CHARS} characters: read no further)"
                if oversize else None, model=completion.model,
                prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                latency_ms=round(completion.latency_ms, 1))
    db.session.add(step)
    counters = dict(run.counters or {})
    for kind in ("auth", "provider", "rate_limit", "identical", "context"):
        counters.pop(f"errors.{kind}", None)
    run.counters = counters
    try:
        db.session.commit()  # the reply, the LLMRequest row and the budget settlement: one transaction
    except IntegrityError:  # another delivery of this step stored its reply first: it carries on
        db.session.rollback()
        metering.after_call(meter, completion)  # this call was made all the same: it counts
        return StepOutcome(False, reason="duplicate delivery")
    analytics.announce(recorded)
    return step
