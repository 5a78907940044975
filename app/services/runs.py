"""Reading the loop's ledger: a bead's runs and its step timeline."""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Run, Step
from app.services.beads import get_bead


def list_steps(bead_id: int, limit: int = 50, offset: int = 0) -> tuple[list[Step], int]:
    get_bead(bead_id)
    query = select(Step).where(Step.bead_id == bead_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Step.id).limit(limit).offset(offset)).all()
    return list(items), int(total or 0)


def list_runs(bead_id: int, limit: int = 50, offset: int = 0) -> tuple[list[Run], int]:
    get_bead(bead_id)
    query = select(Run).where(Run.bead_id == bead_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(Run.id).limit(limit).offset(offset)).all()
    return list(items), int(total or 0)
