"""Budgets: token and cost limits per project or bead, enforced before each LLM call by reserve-then-settle.

A call is admitted only while every limit of its budgets is above what was spent plus what other calls
in flight have reserved; it then holds a reservation (an estimate) until it settles with its real usage.
So spend passes a limit by at most the one call admitted last (when estimates cover the real usage).
Reservations carry a key (`run<id>.step<seq>`): the same step delivered twice holds one reservation.
Every change to a budget row starts with an UPDATE of that row, which serializes writers (a row lock
on PostgreSQL, the write lock on SQLite); `reserved_*` is always recomputed from the reservation rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Bead, Budget, BudgetReservation, LLMRequest, utcnow
from app.services.errors import NotFound, ValidationError
from app.services.projects import get_project

LIMITS = ("daily_usd", "total_usd", "daily_tokens", "total_tokens")
MAX_USD = 1e9
MAX_TOKENS = 10**15


@dataclass(frozen=True)
class Hold:
    """An admitted call's reservations: settle it with the real usage."""

    key: str
    budget_ids: tuple[int, ...]


@dataclass(frozen=True)
class Refusal:
    """A limit that is already reached: the call must not be made."""

    budget_id: int
    scope: str
    project_id: int
    bead_id: int | None
    limit: str
    limit_value: float
    spent: float
    final: bool  # spend alone reached the limit; otherwise calls in flight may still leave room

    def message(self) -> str:
        money = self.limit.endswith("_usd")
        fmt = (lambda v: f"${v:.4f}" if v == 0 or v >= 0.001 else f"${v:.3g}") if money else (
            lambda v: f"{int(v)} tokens")
        where = f"bead {self.bead_id}" if self.scope.startswith("bead:") else f"project {self.project_id}"
        return f"budget exhausted: {where} {self.limit} limit {fmt(self.limit_value)} reached " \
               f"(spent {fmt(self.spent)})"


def scope_of(project_id: int, bead_id: int | None = None) -> str:
    return f"bead:{bead_id}" if bead_id is not None else f"project:{project_id}"


def today(now: datetime | None = None) -> str:
    return (now or utcnow()).date().isoformat()


def _history(project_id: int, bead_id: int | None, day: str) -> tuple[int, float, int, float]:
    """(tokens, usd, tokens today, usd today) already recorded, so a new budget starts from the real spend."""
    column = LLMRequest.bead_id if bead_id is not None else LLMRequest.project_id
    start = datetime.fromisoformat(day + "T00:00:00+00:00")
    tokens = LLMRequest.prompt_tokens + LLMRequest.completion_tokens
    row = db.session.execute(select(
        func.coalesce(func.sum(tokens), 0), func.coalesce(func.sum(LLMRequest.cost_usd), 0.0),
        func.coalesce(func.sum(case((LLMRequest.ts >= start, tokens), else_=0)), 0),
        func.coalesce(func.sum(case((LLMRequest.ts >= start, LLMRequest.cost_usd), else_=0.0)), 0.0))
        .where(column == (bead_id if bead_id is not None else project_id))).one()
    return int(row[0]), float(row[1]), int(row[2]), float(row[3])


def _owner(project_id: int | None, bead_id: int | None) -> tuple[int, int | None]:
    if bead_id is not None:
        bead = db.session.get(Bead, bead_id)
        if bead is None:
            raise NotFound(f"bead {bead_id} not found", "id")
        return bead.project_id, bead_id
    return get_project(project_id).id, None


def get_budget(project_id: int | None = None, bead_id: int | None = None) -> Budget | None:
    project_id, bead_id = _owner(project_id, bead_id)
    return db.session.scalar(select(Budget).where(Budget.scope == scope_of(project_id, bead_id)))


def budget_view(project_id: int | None = None, bead_id: int | None = None, now: datetime | None = None) -> dict:
    """The budget of a project or bead; without one, unlimited, with the spend so far from the request log."""
    project_id, bead_id = _owner(project_id, bead_id)
    budget = db.session.scalar(select(Budget).where(Budget.scope == scope_of(project_id, bead_id)))
    day = today(now)
    if budget is None:
        tokens, usd, day_tokens, day_usd = _history(project_id, bead_id, day)
        view = {"id": None, "scope": scope_of(project_id, bead_id), "project_id": project_id, "bead_id": bead_id,
                **{name: None for name in LIMITS}, "spent_usd": usd, "spent_tokens": tokens, "day": day,
                "day_usd": day_usd, "day_tokens": day_tokens, "reserved_usd": 0.0, "reserved_tokens": 0,
                "exhausted_at": None, "updated_by": None, "updated_at": None}
    else:
        view = budget.to_dict()
        if budget.day != day:  # nothing spent yet today
            view.update(day=day, day_usd=0.0, day_tokens=0)
    view["exhausted"] = [name for name in LIMITS if view[name] is not None and _used(view, name) >= view[name]]
    return view


def _used(values, name: str) -> float:
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k)
    prefix = "day" if name.startswith("daily") else "spent"
    return get(f"{prefix}_{'usd' if name.endswith('usd') else 'tokens'}")


def _check_limit(name: str, value) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"{name} must be a non-negative finite number, or null for no limit", name)
    if name.endswith("_tokens"):
        if value != int(value) or value > MAX_TOKENS:
            raise ValidationError(f"{name} must be a whole number of tokens up to {MAX_TOKENS}", name)
        return int(value)
    if value > MAX_USD:
        raise ValidationError(f"{name} must be at most {MAX_USD:.0f}", name)
    return float(value)


def set_budget(changes: dict, *, project_id: int | None = None, bead_id: int | None = None,
               actor: str | None = None, now: datetime | None = None) -> dict:
    """Set the given limits (null clears one; absent ones stay). A new budget starts from the recorded spend."""
    checked = {name: _check_limit(name, changes[name]) for name in LIMITS if name in changes}
    unknown = sorted(set(changes) - set(LIMITS))
    if unknown:
        raise ValidationError(f"{unknown[0]}: unknown field", unknown[0])
    project_id, bead_id = _owner(project_id, bead_id)
    scope, day = scope_of(project_id, bead_id), today(now)
    budget = db.session.scalar(select(Budget).where(Budget.scope == scope))
    if budget is None:
        tokens, usd, day_tokens, day_usd = _history(project_id, bead_id, day)
        budget = Budget(scope=scope, project_id=project_id, bead_id=bead_id, spent_tokens=tokens, spent_usd=usd,
                        day=day, day_tokens=day_tokens, day_usd=day_usd, reserved_tokens=0, reserved_usd=0.0)
        db.session.add(budget)
        try:
            db.session.flush()
        except IntegrityError:  # created at the same moment by someone else: edit that one
            db.session.rollback()
            budget = db.session.scalar(select(Budget).where(Budget.scope == scope))
    for name, value in checked.items():
        setattr(budget, name, value)
    budget.updated_by = actor
    db.session.flush()
    if budget.exhausted_at is not None and not _reached(budget, day):
        budget.exhausted_at = None
    db.session.commit()
    return budget_view(project_id, bead_id, now)


def _reached(budget: Budget, day: str, reserved_tokens: int = 0, reserved_usd: float = 0.0) -> str | None:
    """The first limit reached by spend plus the given in-flight reservations, if any."""
    fresh = budget.day == day
    used = {"daily_usd": (budget.day_usd if fresh else 0.0) + reserved_usd,
            "total_usd": budget.spent_usd + reserved_usd,
            "daily_tokens": (budget.day_tokens if fresh else 0) + reserved_tokens,
            "total_tokens": budget.spent_tokens + reserved_tokens}
    for name in LIMITS:
        limit = getattr(budget, name)
        if limit is not None and used[name] >= limit:
            return name
    return None


def _touch(budget_id: int, day: str, tokens: int = 0, usd: float = 0.0) -> None:
    """Roll the day counters over at UTC midnight and add spend, in one UPDATE that also locks the row."""
    fresh = Budget.day == day
    db.session.execute(update(Budget).where(Budget.id == budget_id).values(
        day=day, day_tokens=case((fresh, Budget.day_tokens), else_=0) + tokens,
        day_usd=case((fresh, Budget.day_usd), else_=0.0) + usd,
        spent_tokens=Budget.spent_tokens + tokens, spent_usd=Budget.spent_usd + usd,
        updated_at=Budget.updated_at).execution_options(synchronize_session=False))


def _recount(budget_id: int) -> None:
    """`reserved_*` := the sums over the budget's reservation rows (exact, whatever happened before)."""
    mine = BudgetReservation.budget_id == budget_id
    db.session.execute(update(Budget).where(Budget.id == budget_id).values(
        reserved_tokens=select(func.coalesce(func.sum(BudgetReservation.tokens), 0)).where(mine).scalar_subquery(),
        reserved_usd=select(func.coalesce(func.sum(BudgetReservation.usd), 0.0)).where(mine).scalar_subquery(),
        updated_at=Budget.updated_at).execution_options(synchronize_session=False))


def budgets_for(project_id: int, bead_id: int | None) -> list[int]:
    """The ids of the budgets a call for this project and bead counts against (project's, bead's)."""
    scopes = [scope_of(project_id)] + ([scope_of(project_id, bead_id)] if bead_id is not None else [])
    return list(db.session.scalars(select(Budget.id).where(Budget.scope.in_(scopes)).order_by(Budget.id)))


def reserve(project_id: int, bead_id: int | None, key: str, tokens: int, usd: float,
            now: datetime | None = None, budget_ids: list[int] | None = None) -> Hold | Refusal:
    """Admit a call (commit its reservations) or refuse it. A repeated key reuses its reservation.
    `budget_ids`: budgets_for() already read by the caller (in its own transaction), not looked up again."""
    ids = budgets_for(project_id, bead_id) if budget_ids is None else budget_ids
    if not ids:
        return Hold(key, ())
    day = today(now)
    for budget_id in ids:
        _touch(budget_id, day)
        budget = db.session.execute(select(Budget).where(Budget.id == budget_id)
                                    .execution_options(populate_existing=True)).scalar_one()
        mine = db.session.scalar(select(BudgetReservation).where(BudgetReservation.budget_id == budget_id,
                                                                 BudgetReservation.key == key))
        others_tokens = budget.reserved_tokens - (mine.tokens if mine else 0)
        others_usd = budget.reserved_usd - (mine.usd if mine else 0.0)
        reached = _reached(budget, day, others_tokens, others_usd)
        if reached is not None:
            final = _reached(budget, day)
            refusal = Refusal(budget.id, budget.scope, budget.project_id, budget.bead_id, final or reached,
                              float(getattr(budget, final or reached)), float(_used(budget, final or reached)),
                              final is not None)
            db.session.rollback()
            return refusal
        if mine is None:
            db.session.add(BudgetReservation(budget_id=budget_id, key=key, tokens=max(0, int(tokens)),
                                             usd=max(0.0, float(usd)), created_at=now or utcnow()))
            db.session.flush()
            _recount(budget_id)
    db.session.commit()
    return Hold(key, tuple(ids))


def mark_exhausted(refusal: Refusal, now: datetime | None = None) -> None:
    db.session.execute(update(Budget).where(Budget.id == refusal.budget_id, Budget.exhausted_at.is_(None))
                       .values(exhausted_at=now or utcnow()).execution_options(synchronize_session=False))


def settle(hold: Hold, tokens: int, usd: float, now: datetime | None = None) -> None:
    """Replace the hold's reservations by the real usage. Does not commit: the caller commits it together
    with the LLMRequest row. Settling twice (a redelivery) adds the usage twice: both calls happened."""
    day = today(now)
    for budget_id in hold.budget_ids:
        _touch(budget_id, day, max(0, int(tokens)), max(0.0, float(usd)))
        db.session.execute(delete(BudgetReservation).where(BudgetReservation.budget_id == budget_id,
                                                           BudgetReservation.key == hold.key))
        _recount(budget_id)


def release_stale_reservations(older_than_s: float, now: datetime | None = None) -> int:
    """Drop reservations of calls that never settled (their worker died); returns how many."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    stale = db.session.execute(select(BudgetReservation.id, BudgetReservation.budget_id)
                               .where(BudgetReservation.created_at < cutoff).limit(500)).all()
    for budget_id in sorted({b for _, b in stale}):
        _touch(budget_id, today(now))
        db.session.execute(delete(BudgetReservation).where(BudgetReservation.id.in_(
            [r for r, b in stale if b == budget_id])))
        _recount(budget_id)
    db.session.commit()
    return len(stale)
