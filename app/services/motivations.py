"""Motivations (triggers that make agents start work on their own): validation per kind, CRUD, history."""
from __future__ import annotations

import math
import re
from datetime import datetime

from sqlalchemy import func, select

from app.extensions import db
from app.models import BEAD_TYPES, MOTIVATION_KINDS, Motivation, MotivationFiring, Persona, Project, iso, utcnow
from app.services import cron as cron_parser
from app.services.errors import Conflict, NotFound, ValidationError
from app.services import paging

METRICS = ("cost_usd_today", "cost_usd_total", "open_beads", "blocked_beads", "error_rate_1h")
OPS = (">", ">=", "<", "<=")
# Events a motivation may react to: each is about one bead, so the no-chain rule can always be applied.
EVENT_TYPES = ("bead.created", "bead.updated", "bead.claimed", "bead.commented", "bead.status_changed",
               "bead.closed", "bead.blocked", "run.started", "run.finished", "test.failed")
TRIGGER_FIELD = {"interval": "interval_s", "calendar": "cron", "idle": "idle_minutes", "threshold": "threshold",
                 "event": "event"}
EDITABLE = ("name", "kind", "event", "interval_s", "cron", "idle_minutes", "threshold", "cooldown_s", "project_id",
            "persona", "bead_template", "wake_agent", "enabled", "description")
TEMPLATE_KEYS = ("title", "description", "priority", "type", "tags", "acceptance")
MAX_SECONDS = 366 * 86_400


def get_motivation(motivation_id: int) -> Motivation:
    motivation = db.session.get(Motivation, motivation_id)
    if motivation is None:
        raise NotFound(f"motivation {motivation_id} not found", "id")
    return motivation


def _int(fields: dict, name: str, low: int, high: int, what: str) -> int:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} is required: a whole number ({what})", name)
    if not low <= value <= high:
        raise ValidationError(f"{name} must be {low}-{high} ({what})", name)
    return value


def _threshold(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValidationError('threshold is required: {"metric": ..., "op"?: ">", "value": number}', "threshold")
    unknown = set(value) - {"metric", "op", "value"}
    if unknown:
        raise ValidationError(f"threshold: unknown key {sorted(unknown)[0]!r}", "threshold")
    metric, op, number = value.get("metric"), value.get("op", ">"), value.get("value")
    if metric not in METRICS:
        raise ValidationError(f"threshold.metric must be one of {', '.join(METRICS)}", "threshold.metric")
    if op not in OPS:
        raise ValidationError(f"threshold.op must be one of {' '.join(OPS)}", "threshold.op")
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number) or number < 0:
        raise ValidationError("threshold.value must be a number, 0 or more", "threshold.value")
    if metric == "error_rate_1h" and number > 1:
        raise ValidationError("threshold.value for error_rate_1h is a fraction: 0.2 means 20 %", "threshold.value")
    return {"metric": metric, "op": op, "value": int(number) if float(number).is_integer() else number}


def _template(value: object) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("bead_template must be an object {title, description?, priority?}", "bead_template")
    unknown = set(value) - set(TEMPLATE_KEYS)
    if unknown:
        raise ValidationError(f"bead_template: unknown key {sorted(unknown)[0]!r}", "bead_template")
    title = value.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise ValidationError("bead_template.title is required (1-200 characters) to create a bead",
                              "bead_template.title")
    out: dict = {"title": title.strip(), "description": value.get("description") or "",
                 "priority": value.get("priority", 2), "type": value.get("type") or "task"}
    if not isinstance(out["description"], str) or len(out["description"]) > 65_536:
        raise ValidationError("bead_template.description must be text", "bead_template.description")
    if out["priority"] not in (0, 1, 2, 3) or isinstance(out["priority"], bool):
        raise ValidationError("bead_template.priority must be 0 (P0, highest) to 3", "bead_template.priority")
    if out["type"] not in BEAD_TYPES or out["type"] == "decision":
        raise ValidationError("bead_template.type must be task, bug, feature or epic", "bead_template.type")
    tags = value.get("tags") or []
    if not isinstance(tags, list) or len(tags) > 10 or not all(isinstance(t, str) and 0 < len(t) <= 50 for t in tags):
        raise ValidationError("bead_template.tags: at most 10 tags of 1-50 characters", "bead_template.tags")
    out["tags"] = tags
    acceptance = value.get("acceptance")
    if acceptance is not None and (not isinstance(acceptance, str) or len(acceptance) > 4000):
        raise ValidationError("bead_template.acceptance must be a shell command", "bead_template.acceptance")
    if acceptance:
        out["acceptance"] = acceptance
    return out


def _trigger(kind: str, fields: dict, min_interval_s: float) -> dict:
    """The one trigger field of this kind, checked; the other kinds' fields are cleared."""
    out: dict = {name: None for name in TRIGGER_FIELD.values()}
    if kind == "interval":
        low = max(1, math.ceil(min_interval_s))
        out["interval_s"] = _int(fields, "interval_s", low, MAX_SECONDS, f"seconds, at least the tick's {low}")
    elif kind == "calendar":
        if not isinstance(fields.get("cron"), str) or not fields["cron"].strip():
            raise ValidationError('cron is required for a calendar motivation, e.g. "0 9 * * 1-5" (UTC)', "cron")
        try:
            out["cron"] = cron_parser.parse(fields["cron"]).expression
        except cron_parser.CronError as exc:
            raise ValidationError(f"cron: {exc}", "cron") from None
    elif kind == "idle":
        out["idle_minutes"] = _int(fields, "idle_minutes", 1, 525_600, "minutes without activity")
    elif kind == "threshold":
        out["threshold"] = _threshold(fields.get("threshold"))
    else:
        if fields.get("event") not in EVENT_TYPES:
            raise ValidationError(f"event must be one of {', '.join(EVENT_TYPES)}", "event")
        out["event"] = fields["event"]
    return out


def validate(fields: dict, min_interval_s: float = 30.0, except_id: int | None = None) -> dict:
    """Check a whole motivation (create, or current values merged with a PATCH); returns the clean fields."""
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 100:
        raise ValidationError("name is required (1-100 characters)", "name")
    kind = fields.get("kind")
    if kind not in MOTIVATION_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(MOTIVATION_KINDS)}", "kind")
    out = {"name": name.strip(), "kind": kind, **_trigger(kind, fields, min_interval_s)}
    out["cooldown_s"] = _int({"cooldown_s": fields.get("cooldown_s") or 0}, "cooldown_s", 0, MAX_SECONDS,
                             "seconds between two firings for one project")
    project_id = fields.get("project_id")
    if project_id is not None and db.session.get(Project, project_id) is None:
        raise NotFound(f"project {project_id} not found", "project_id")
    persona = fields.get("persona") or None
    if persona is not None and db.session.get(Persona, persona) is None:
        raise ValidationError(f"persona {persona!r} does not exist", "persona")
    out.update(project_id=project_id, persona=persona, bead_template=_template(fields.get("bead_template")),
               wake_agent=bool(fields.get("wake_agent")), enabled=bool(fields.get("enabled", True)),
               description=str(fields.get("description") or "")[:4000])
    if out["wake_agent"] and persona is None:
        raise ValidationError("wake_agent needs a persona: whose agent to wake", "persona")
    if out["bead_template"] is None and not out["wake_agent"]:
        raise ValidationError("a motivation creates a bead (bead_template) or wakes an agent (wake_agent)",
                              "bead_template")
    taken = select(func.count()).select_from(Motivation).where(func.lower(Motivation.name) == out["name"].lower())
    if except_id is not None:
        taken = taken.where(Motivation.id != except_id)
    if db.session.scalar(taken):
        raise Conflict(f"a motivation named {out['name']!r} already exists", "name", code="exists")
    return out


def create_motivation(fields: dict, *, min_interval_s: float = 30.0, actor: str | None = None,
                      builtin: bool = False) -> Motivation:
    clean = validate(fields, min_interval_s)
    motivation = Motivation(**clean, builtin=builtin, created_by=actor,
                            enabled_at=utcnow() if clean["enabled"] else None)
    db.session.add(motivation)
    db.session.commit()
    return motivation


def update_motivation(motivation_id: int, changes: dict, *, min_interval_s: float = 30.0) -> Motivation:
    motivation = get_motivation(motivation_id)
    current = {name: getattr(motivation, name) for name in EDITABLE}
    clean = validate({**current, **changes}, min_interval_s, except_id=motivation.id)
    if clean["enabled"] and not motivation.enabled:
        motivation.enabled_at = utcnow()  # catch-up never reaches back into the time it was off
    for name, value in clean.items():
        setattr(motivation, name, value)
    db.session.commit()
    return motivation


def delete_motivation(motivation_id: int) -> None:
    motivation = get_motivation(motivation_id)
    if motivation.builtin:
        raise Conflict("a built-in motivation cannot be deleted; disable it instead", "id", code="builtin")
    db.session.delete(motivation)
    db.session.commit()


def list_motivations(*, project_id: int | None = None, kind: str | None = None, enabled: bool | None = None,
                     limit: int = 50, offset: int = 0) -> tuple[list[Motivation], int]:
    query = select(Motivation)
    if project_id is not None:
        query = query.where(Motivation.project_id == project_id)
    if kind is not None:
        query = query.where(Motivation.kind == kind)
    if enabled is not None:
        query = query.where(Motivation.enabled.is_(enabled))
    return paging.page(query, Motivation.name, Motivation.id, limit=limit, offset=offset)


def describe_trigger(motivation: Motivation) -> str:
    """One human line for the trigger, shared by the page, the CLI (through the API) and the history."""
    kind = motivation.kind
    if kind == "interval":
        seconds = motivation.interval_s or 0
        every = f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min" \
            if seconds % 60 == 0 else f"{seconds} s"
        return f"every {every}"
    if kind == "calendar":
        return f"cron {motivation.cron} (UTC)"
    if kind == "idle":
        return f"project idle for {motivation.idle_minutes} min"
    if kind == "threshold":
        t = motivation.threshold or {}
        return f"{t.get('metric')} {t.get('op', '>')} {t.get('value')}"
    return f"on {motivation.event}"


def next_due(motivation: Motivation, now: datetime | None = None) -> datetime | None:
    if motivation.kind != "calendar" or not motivation.cron:
        return None
    return cron_parser.next_due(cron_parser.parse(motivation.cron), now or utcnow())


def motivation_view(motivation: Motivation) -> dict:
    return {**motivation.to_dict(), "trigger": describe_trigger(motivation),
            "next_due": iso(next_due(motivation)) if motivation.enabled else None}


def list_firings(*, motivation_id: int | None = None, project_id: int | None = None, outcome: str | None = None,
                 limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
    """The history, newest first, each firing with its motivation's name."""
    query = select(MotivationFiring, Motivation.name).join(Motivation,
                                                           Motivation.id == MotivationFiring.motivation_id)
    if motivation_id is not None:
        query = query.where(MotivationFiring.motivation_id == motivation_id)
    if project_id is not None:
        query = query.where(MotivationFiring.project_id == project_id)
    if outcome is not None:
        query = query.where(MotivationFiring.outcome == outcome)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.execute(query.order_by(MotivationFiring.fired_at.desc(), MotivationFiring.id.desc())
                              .limit(limit).offset(offset)).all()
    return [{**firing.to_dict(), "motivation_name": name} for firing, name in rows], int(total or 0)


PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def render(text: str, values: dict) -> str:
    """Fill {bead_id}, {title}, {project}, {date} ... ; a placeholder without a value becomes "?", an unknown
    one stays as written."""
    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            return match.group(0)
        value = values[key]
        if isinstance(value, float):
            value = int(value) if value.is_integer() else round(value, 4)
        return "?" if value is None or value == "" else str(value)
    return PLACEHOLDER.sub(fill, text)
