"""Reading the loop's ledger: a bead's runs and its step timeline."""
from __future__ import annotations

from sqlalchemy import select

from app.models import Run, Step
from app.services.beads import get_bead
from app.services import paging


def list_steps(bead_id: int, limit: int = 50, offset: int = 0) -> tuple[list[Step], int]:
    get_bead(bead_id)
    query = select(Step).where(Step.bead_id == bead_id)
    return paging.page(query, Step.id, limit=limit, offset=offset)


def list_runs(bead_id: int, limit: int = 50, offset: int = 0) -> tuple[list[Run], int]:
    get_bead(bead_id)
    query = select(Run).where(Run.bead_id == bead_id)
    return paging.page(query, Run.id, limit=limit, offset=offset)
