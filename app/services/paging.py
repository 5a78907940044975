"""One window of a query and the total it has: the `(items, total)` every list service returns."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from app.extensions import db


def page(query: Select, *order_by: Any, limit: int, offset: int) -> tuple[list, int]:
    """`limit` rows of `query` from `offset` in the given order, and how many rows it has in all."""
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(*order_by).limit(limit).offset(offset)).all()
    return list(items), int(total or 0)
