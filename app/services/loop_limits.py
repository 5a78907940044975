"""When a run must stop: the loop limits, and the provider-error bookkeeping that auto-blocks a bead."""
from __future__ import annotations

from dataclasses import dataclass

from app.extensions import db
from app.llm import LLMError
from app.models import Bead, ERROR_HISTORY_KEEP, Run, utcnow

LIMITS = {
    "max_iterations": "reached the maximum number of iterations",
    "parse_failures": "5 replies in a row could not be read as actions",
    "validation_failures": "8 malformed actions",
    "repeated_action": "the same actions were repeated 10 times in a row",
    "no_progress": "15 turns in a row changed nothing",
}
MAX_PARSE_FAILURES = 5
MAX_VALIDATION_FAILURES = 8
MAX_REPEATS = 10
MAX_IDLE_TURNS = 15
# errors of a kind (in a row, within a run) that auto-block the bead, and the block kind recorded
ERROR_THRESHOLDS = {"auth": (3, "auth"), "rate_limit": (5, "rate_limit"), "provider": (5, "provider")}
IDENTICAL_THRESHOLD = 5
MIN_CONTEXT_CHARS = 8_000


def check_limits(run: Run, *, parse_failed: bool, invalid: int, mutated: bool, fingerprint: str,
                 max_iterations: int) -> str | None:
    """Update the run's counters with this turn; return the name of a limit that was hit, if any."""
    c = dict(run.counters or {})
    c["parse_failures"] = c.get("parse_failures", 0) + 1 if parse_failed else 0
    c["validation_failures"] = c.get("validation_failures", 0) + invalid
    if fingerprint == c.get("last_fingerprint") and not parse_failed:
        c["repeats"] = c.get("repeats", 1) + 1
    else:
        c["repeats"] = 1
    c["last_fingerprint"] = fingerprint
    c["idle_turns"] = 0 if mutated else c.get("idle_turns", 0) + 1
    run.counters = c
    if c["parse_failures"] >= MAX_PARSE_FAILURES:
        return "parse_failures"
    if c["validation_failures"] >= MAX_VALIDATION_FAILURES:
        return "validation_failures"
    if c["repeats"] >= MAX_REPEATS:
        return "repeated_action"
    if c["idle_turns"] >= MAX_IDLE_TURNS:
        return "no_progress"
    return None


@dataclass
class ErrorVerdict:
    block_kind: str | None  # set when the bead must be blocked
    reason: str
    retry_in_s: float


def _kind_group(kind: str) -> str:
    if kind in ("auth", "rate_limit"):
        return kind
    return "provider"  # provider, timeout, connection, bad_response


def record_llm_error(run: Run, seq: int, exc: LLMError, context_chars: int, backoff_s: float = 2.0) -> ErrorVerdict:
    """Note the error on the bead (last 20) and the run; decide between retrying later and blocking."""
    bead = db.session.get(Bead, run.bead_id)
    entry = {"ts": utcnow().isoformat(), "kind": exc.kind, "status": exc.status, "message": str(exc)[:300],
             "run_id": run.id, "seq": seq}
    bead.error_history = ((bead.error_history or []) + [entry])[-ERROR_HISTORY_KEEP:]
    c = dict(run.counters or {})
    if exc.kind == "context_length":
        c["context_chars"] = max(MIN_CONTEXT_CHARS, context_chars // 2)
        c["errors.context"] = c.get("errors.context", 0) + 1
        run.counters = c
        db.session.commit()
        if c["errors.context"] > 3:
            return ErrorVerdict("provider", "the conversation does not fit the model's context window", 0)
        return ErrorVerdict(None, "context trimmed", 0)
    group = _kind_group(exc.kind)
    c[f"errors.{group}"] = c.get(f"errors.{group}", 0) + 1
    same = c.get("last_error") == entry["message"]
    c["errors.identical"] = c.get("errors.identical", 0) + 1 if same else 1
    c["last_error"] = entry["message"]
    run.counters = c
    db.session.commit()
    threshold, block_kind = ERROR_THRESHOLDS[group]
    if c[f"errors.{group}"] >= threshold:
        return ErrorVerdict(block_kind, f"{threshold} {group.replace('_', '-')} errors from the provider: "
                                        f"{entry['message']}", 0)
    if c["errors.identical"] >= IDENTICAL_THRESHOLD:
        return ErrorVerdict(block_kind, f"the same provider error {IDENTICAL_THRESHOLD} times: {entry['message']}", 0)
    return ErrorVerdict(None, entry["message"], min(30.0, backoff_s * 2 ** (c[f"errors.{group}"] - 1)))
