"""Runtime configuration overrides kept in the database (ConfigKV), typed and range-checked."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import ConfigKV
from app.services import table_cache
from app.services.errors import NotFound, ValidationError

# key -> (type, min, max, description). Only these may be overridden at runtime.
RUNTIME_KEYS: dict[str, tuple[type, int | None, int | None, str]] = {
    "dispatch.max_concurrent": (int, 1, 10000, "beads running at once, all projects"),
    "dispatch.max_per_project": (int, 1, 1000, "beads running at once in one project"),
    "loop.max_iterations": (int, 1, 100, "LLM turns a bead may take before the run stops"),
    "lease_seconds": (int, 30, 86400, "how long a claim holds a bead before it may be reclaimed"),
    "dispatch.enabled": (bool, None, None, "whether ready beads are dispatched to agents at all"),
}


def effective_config(defaults: dict[str, Any]) -> list[dict]:
    overrides = {row.key: row for row in db.session.scalars(select(ConfigKV)).all()}
    out = []
    for key, (kind, low, high, description) in RUNTIME_KEYS.items():
        row = overrides.get(key)
        out.append({"key": key, "type": kind.__name__, "min": low, "max": high, "description": description,
                    "default": defaults.get(key), "value": row.value if row else defaults.get(key),
                    "overridden": row is not None, "updated_by": row.updated_by if row else None})
    return out


def _overrides() -> dict[str, Any]:
    return {row.key: row.value for row in db.session.scalars(select(ConfigKV)).all()}


def get_setting(key: str, default: Any) -> Any:
    """The override of `key`, else `default`. Every loop step asks, so the table is read at most once a second
    per process (a PUT /config reaches other processes within that second; see table_cache)."""
    return table_cache.cached(ConfigKV.__tablename__, "all", _overrides).get(key, default)


def set_setting(key: str, value: Any, actor: str | None) -> ConfigKV:
    if key not in RUNTIME_KEYS:
        raise NotFound(f"unknown setting {key!r}; known: {', '.join(RUNTIME_KEYS)}", "key")
    kind, low, high, _ = RUNTIME_KEYS[key]
    if kind is bool and not isinstance(value, bool):
        raise ValidationError(f"{key} takes true or false", "value")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{key} takes an integer", "value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValidationError(f"{key} must be between {low} and {high}", "value")
    row = db.session.get(ConfigKV, key) or ConfigKV(key=key)
    row.value, row.updated_by = value, actor
    db.session.add(row)
    db.session.commit()
    return row
