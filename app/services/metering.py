"""Metering of the action loop's LLM calls: reserve budget before the call, record it and settle after.

`before_call` returns a Meter: admitted (a budget hold) or refused (`refusal` set, then `refuse` blocks the
bead); `after_call` / `after_error` write the LLMRequest row and settle the hold in one transaction.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from flask import current_app

from app.extensions import db
from app.llm import Completion, LLMClient, LLMError
from app.llm_context import content_chars
from app.models import Agent, LLMRequest, Run
from app.services import analytics, beads, budgets, pricing
from app.services.budgets import Refusal
from app.services.events import emit

CHARS_PER_TOKEN = 4
BUSY_RETRY_S = 5.0  # a limit taken only by calls in flight: try the step again after this

__all__ = ["BUSY_RETRY_S", "Meter", "Refusal", "after_call", "after_error", "before_call", "budget_ids",
           "refuse"]


@dataclass
class Meter:
    """One call: who makes it, with what model, and either its budget hold or the refusal."""

    run_id: int
    seq: int
    project_id: int
    bead_id: int
    agent_id: int | None
    persona: str | None
    model: str
    provider: str | None
    hold: budgets.Hold | None
    refusal: Refusal | None
    started: float
    source: str = "loop"


def _model(llm: LLMClient) -> str:
    try:
        return llm.resolve_model()
    except LLMError:  # the call itself will fail and say why; price the estimate as an unknown model
        return llm.model or ""


def estimate(messages: list[dict], model: str) -> tuple[int, float]:
    """(tokens, usd) to reserve: the prompt at ~4 characters a token plus a completion allowance."""
    prompt = sum(content_chars(m) for m in messages) // CHARS_PER_TOKEN
    completion = int(current_app.config.get("BUDGET_COMPLETION_TOKENS", 4096))
    return prompt + completion, pricing.cost_usd(model, prompt, completion)


def budget_ids(run: Run) -> list[int]:
    """The budgets the run's calls count against: read ahead by a caller that has a transaction open anyway,
    then passed to before_call (a project without budgets then costs no transaction of its own)."""
    return budgets.budgets_for(run.project_id, run.bead_id)


def before_call(run: Run, seq: int, messages: list[dict], llm: LLMClient, source: str = "loop",
                budget_ids: list[int] | None = None) -> Meter:
    """Reserve the estimate on the project's and the bead's budgets (key `run<id>.step<seq>`); pair turns
    pass source="pair"."""
    agent = db.session.get(Agent, run.agent_id) if run.agent_id is not None else None
    model = _model(llm)
    tokens, usd = estimate(messages, model)
    held = budgets.reserve(run.project_id, run.bead_id, f"run{run.id}.step{seq}", tokens, usd, budget_ids=budget_ids)
    refused = isinstance(held, Refusal)
    if not refused:  # the call is made holding no transaction (the budget lookup opened one) nor a connection
        db.session.commit()
    return Meter(run.id, seq, run.project_id, run.bead_id, run.agent_id, agent.persona if agent else None, model,
                 analytics.provider_label(llm.base_url), None if refused else held, held if refused else None,
                 time.monotonic(), source)


def _record(meter: Meter, commit: bool = True, **fields) -> LLMRequest:
    row = analytics.record_request(project_id=meter.project_id, bead_id=meter.bead_id, agent_id=meter.agent_id,
                                   run_id=meter.run_id, seq=meter.seq, persona=meter.persona,
                                   provider=meter.provider, source=meter.source, commit=False, **fields)
    budgets.settle(meter.hold, row.prompt_tokens + row.completion_tokens, row.cost_usd)
    if commit:
        db.session.commit()
        analytics.announce(row)
    return row


def after_call(meter: Meter, completion: Completion, commit: bool = True) -> LLMRequest:
    """With commit=False the caller commits the row and the settlement together with what it stores of the
    reply, then calls `analytics.announce(row)`."""
    return _record(meter, commit, model=completion.model or meter.model, prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens, latency_ms=completion.latency_ms,
                   estimated=completion.estimated_usage)


def after_error(meter: Meter, exc: LLMError) -> None:
    _record(meter, model=meter.model, status=exc.kind, error=str(exc)[:2000],
            latency_ms=(time.monotonic() - meter.started) * 1000)


def refuse(meter: Meter) -> str | None:
    """A final refusal: record it (status "budget", no tokens), mark the budget exhausted, block the bead
    (kind "budget": Ralph never retries it) and emit `budget.exhausted`; returns the reason. None when
    only calls in flight fill the budget: the step should wait and try again."""
    refusal = meter.refusal
    if refusal is None or not refusal.final:
        return None
    reason = refusal.message()
    budgets.mark_exhausted(refusal)
    row = analytics.record_request(project_id=meter.project_id, bead_id=meter.bead_id, agent_id=meter.agent_id,
                                   run_id=meter.run_id, seq=meter.seq, persona=meter.persona, model=meter.model,
                                   provider=meter.provider, source=meter.source, status="budget", error=reason,
                                   commit=False)
    db.session.commit()
    analytics.announce(row)
    emit("step.finished", project_id=meter.project_id, bead_id=meter.bead_id, agent_id=meter.agent_id,
         data={"run_id": meter.run_id, "seq": meter.seq, "error": {"kind": "budget", "message": reason[:300]}})
    beads.block_bead(meter.bead_id, reason, kind="budget")
    emit("budget.exhausted", project_id=meter.project_id, bead_id=meter.bead_id,
         data={"project_id": meter.project_id, "bead_id": meter.bead_id, "scope": refusal.scope,
               "limit": refusal.limit, "limit_value": refusal.limit_value, "spent": refusal.spent,
               "message": reason})
    return reason
