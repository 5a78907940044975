"""The price table: USD per million tokens by model name pattern (a `*` suffix matches a prefix; longest wins)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import ModelPrice
from app.services import table_cache
from app.services.errors import NotFound, ValidationError

# Examples of public list prices (USD per 1M prompt / completion tokens) seeded into an empty table by
# `loom init`; check them against your provider's price list and change them with PUT /analytics/prices.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o*": (2.50, 10.00),
    "gpt-4o-mini*": (0.15, 0.60),
    "gpt-4.1*": (2.00, 8.00),
    "gpt-4.1-mini*": (0.40, 1.60),
    "gpt-4.1-nano*": (0.10, 0.40),
    "o3-mini*": (1.10, 4.40),
    "o4-mini*": (1.10, 4.40),
    "gpt-3.5-turbo*": (0.50, 1.50),
}
PATTERN_RE = re.compile(r"^(\*|[A-Za-z0-9._:/@+-]{1,199}\*?)$")
MAX_USD_PER_MTOK = 1_000_000.0
MAX_PRICES = 1000


@dataclass(frozen=True)
class Quote:
    """What one call cost, and whether a price was found for its model (unknown models cost 0)."""

    cost_usd: float
    priced: bool
    pattern: str | None = None


def matches(pattern: str, model: str) -> bool:
    return model.startswith(pattern[:-1]) if pattern.endswith("*") else model == pattern


def _rank(pattern: str) -> tuple[int, int]:
    """Longer literal text wins; at equal length an exact name beats a prefix pattern."""
    return (len(pattern.rstrip("*")), 0 if pattern.endswith("*") else 1)


@dataclass(frozen=True)
class Price:
    """One row of the price table, as read (a plain value: it may outlive the session)."""

    pattern: str
    prompt_usd_per_mtok: float
    completion_usd_per_mtok: float


def _prices() -> tuple[Price, ...]:
    return tuple(Price(row.pattern, row.prompt_usd_per_mtok, row.completion_usd_per_mtok)
                 for row in db.session.scalars(select(ModelPrice)).all())


def price_for(model: str, prices: list[ModelPrice] | None = None) -> ModelPrice | Price | None:
    """The price row that applies to `model`, or None (the table is read at most once a second per process:
    every call of every step is priced)."""
    rows = prices if prices is not None else table_cache.cached(ModelPrice.__tablename__, "all", _prices)
    candidates = [row for row in rows if matches(row.pattern, model or "")]
    return max(candidates, key=lambda row: _rank(row.pattern)) if candidates else None


def quote(model: str, prompt_tokens: int, completion_tokens: int) -> Quote:
    price = price_for(model)
    if price is None:
        return Quote(0.0, False)
    cost = (prompt_tokens * price.prompt_usd_per_mtok + completion_tokens * price.completion_usd_per_mtok) / 1e6
    return Quote(cost, True, price.pattern)


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for a call of `model` with these token counts (0 for a model with no price)."""
    return quote(model, prompt_tokens, completion_tokens).cost_usd


def list_prices(limit: int = 50, offset: int = 0) -> tuple[list[ModelPrice], int]:
    total = db.session.scalar(select(func.count()).select_from(ModelPrice))
    rows = db.session.scalars(select(ModelPrice).order_by(ModelPrice.pattern).limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def _check_pattern(pattern: str) -> str:
    if not PATTERN_RE.match(pattern or ""):
        raise ValidationError("pattern: a model name of 1-200 letters, digits and ._:/@+-, optionally ending "
                              "in * (a prefix match), or * alone", "pattern")
    return pattern


def _check_price(value: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= MAX_USD_PER_MTOK:
        raise ValidationError(f"{field} must be a finite number from 0 to {MAX_USD_PER_MTOK:.0f}", field)
    return float(value)


def set_price(pattern: str, prompt_usd_per_mtok: float, completion_usd_per_mtok: float,
              actor: str | None = None) -> ModelPrice:
    """Create or replace the price of a pattern. Recorded requests keep the cost they had when made."""
    _check_pattern(pattern)
    prompt = _check_price(prompt_usd_per_mtok, "prompt_usd_per_mtok")
    completion = _check_price(completion_usd_per_mtok, "completion_usd_per_mtok")
    row = db.session.get(ModelPrice, pattern)
    if row is None:
        if db.session.scalar(select(func.count()).select_from(ModelPrice)) >= MAX_PRICES:
            raise ValidationError(f"the price table holds at most {MAX_PRICES} patterns", "pattern")
        row = ModelPrice(pattern=pattern)
        db.session.add(row)
    row.prompt_usd_per_mtok, row.completion_usd_per_mtok, row.updated_by = prompt, completion, actor
    db.session.commit()
    return row


def delete_price(pattern: str) -> None:
    row = db.session.get(ModelPrice, pattern)
    if row is None:
        raise NotFound(f"no price for the pattern {pattern!r}", "pattern")
    db.session.delete(row)
    db.session.commit()


def seed_default_prices() -> list[str]:
    """On first start (an empty table), add DEFAULT_PRICES; returns the patterns added."""
    if db.session.scalar(select(func.count()).select_from(ModelPrice)):
        return []
    for pattern, (prompt, completion) in DEFAULT_PRICES.items():
        db.session.add(ModelPrice(pattern=pattern, prompt_usd_per_mtok=prompt, completion_usd_per_mtok=completion,
                                  updated_by="defaults"))
    db.session.commit()
    return list(DEFAULT_PRICES)
