"""What idle and threshold motivations measure, per project, in one grouped query each."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, func, select

from app.extensions import db
from app.models import Bead, LLMRequest, Project, Run


def _grouped(query) -> dict[int, float]:
    return {pid: value for pid, value in db.session.execute(query).all() if pid is not None}


def metric_by_project(metric: str, now: datetime) -> dict[int, float]:
    """The threshold metric for every project (projects without rows are 0)."""
    if metric in ("cost_usd_today", "cost_usd_total"):
        query = select(LLMRequest.project_id, func.coalesce(func.sum(LLMRequest.cost_usd), 0.0))
        if metric == "cost_usd_today":
            query = query.where(LLMRequest.ts >= now.replace(hour=0, minute=0, second=0, microsecond=0))
        return _grouped(query.where(LLMRequest.ts <= now).group_by(LLMRequest.project_id))
    if metric in ("open_beads", "blocked_beads"):
        status = "open" if metric == "open_beads" else "blocked"
        return _grouped(select(Bead.project_id, func.count()).where(Bead.status == status, Bead.type != "decision")
                        .group_by(Bead.project_id))
    failed = func.sum(case((LLMRequest.status != "ok", 1), else_=0))
    rows = db.session.execute(select(LLMRequest.project_id, failed, func.count())
                              .where(LLMRequest.ts > now - timedelta(hours=1), LLMRequest.ts <= now,
                                     LLMRequest.source != "health")
                              .group_by(LLMRequest.project_id)).all()
    return {pid: (errors or 0) / total for pid, errors, total in rows if pid is not None and total}


def window_of(metric: str, now: datetime) -> str:
    """How often a threshold may fire per project: once a day, or once an hour for the hourly error rate."""
    return now.strftime("%Y%m%dT%H") if metric == "error_rate_1h" else now.strftime("%Y%m%d")


def compare(value: float, op: str, limit: float) -> bool:
    return {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[op]


def busy_projects() -> set[int]:
    """Projects with a bead in progress are not idle, however quiet their logs are."""
    return set(db.session.scalars(select(Bead.project_id).where(Bead.status == "in_progress").distinct()).all())


def last_activity() -> dict[int, datetime]:
    """The latest change per project: the project itself, any of its beads, any of its runs."""
    latest = {pid: at for pid, at in db.session.execute(select(Project.id, Project.updated_at)).all()}
    for query in (select(Bead.project_id, func.max(Bead.updated_at)).group_by(Bead.project_id),
                  select(Run.project_id, func.max(Run.updated_at)).group_by(Run.project_id)):
        for pid, at in db.session.execute(query).all():
            if pid in latest and at is not None and at > latest[pid]:
                latest[pid] = at
    return latest


def open_motivated(created_by: str) -> set[int]:
    """Projects that still have an unfinished bead from this motivation (an idle check waits for it)."""
    return set(db.session.scalars(select(Bead.project_id).where(Bead.created_by == created_by,
                                                                Bead.status != "closed").distinct()).all())
