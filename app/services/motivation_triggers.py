"""When motivations fire: each kind's occasion (and its dedup key), events, the Beat tick, manual triggers.

Occasion keys: interval `m<id>:i:<slot>`, calendar `m<id>:c:<due minute>`, idle `m<id>:idle:<project>:<last
activity>`, threshold `m<id>:t:<project>:<day or hour>`, event `m<id>:e:<bead id or event id>`; interval and
calendar keys end in `:p<project>` when one motivation serves every project.
"""
from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import Bead, Motivation, MotivationFiring, Project, utcnow
from app.services import cron as cron_parser
from app.services import motivation_metrics as metrics
from app.services.errors import Conflict, NotFound, ValidationError
from app.services.motivation_firing import CREATED_BY_PREFIX, Wake, fire, is_motivated, repair_pending
from app.services.motivations import EVENT_TYPES, get_motivation

log = logging.getLogger("loom.motivations")
CALENDAR_WINDOW_MINUTES = 10  # a cron minute missed by this many minutes (Beat down) is still fired once
CATCHUP_WINDOW = timedelta(hours=24)  # closed beads older than this are never caught up
CATCHUP_OVERLAP = timedelta(minutes=10)  # re-scan behind the cursor: a slow commit may land out of order
CATCHUP_LIMIT = 500
ONCE_PER_BEAD = {"bead.created", "bead.closed", "bead.blocked", "test.failed"}
Occasion = tuple[str, int | None, dict]  # (dedup key, project id, trigger)


class TickState:
    """What one tick measures once and shares between motivations."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.projects = list(db.session.scalars(select(Project.id).order_by(Project.id)).all())
        self._metrics: dict[str, dict[int, float]] = {}
        self._activity: dict[int, datetime] | None = None
        self._busy: set[int] | None = None

    def metric(self, name: str) -> dict[int, float]:
        if name not in self._metrics:
            self._metrics[name] = metrics.metric_by_project(name, self.now)
        return self._metrics[name]

    def activity(self) -> tuple[dict[int, datetime], set[int]]:
        if self._activity is None:
            self._activity, self._busy = metrics.last_activity(), metrics.busy_projects()
        return self._activity, self._busy


def _targets(motivation: Motivation, state: TickState) -> list[int | None]:
    if motivation.project_id is not None:
        return [motivation.project_id]
    return list(state.projects) if motivation.bead_template else [None]


def _suffix(motivation: Motivation, project_id: int | None) -> str:
    return f":p{project_id}" if motivation.project_id is None and project_id is not None else ""


def occasions(motivation: Motivation, state: TickState) -> Iterator[Occasion]:
    """The occasions due now for one interval/calendar/idle/threshold motivation."""
    now, kind = state.now, motivation.kind
    if kind == "interval":
        slot = math.floor(now.timestamp() / motivation.interval_s)
        for pid in _targets(motivation, state):
            yield f"m{motivation.id}:i:{slot}{_suffix(motivation, pid)}", pid, {"kind": kind, "slot": slot}
    elif kind == "calendar":
        due = cron_parser.last_due(cron_parser.parse(motivation.cron), now, CALENDAR_WINDOW_MINUTES)
        enabled_at = (motivation.enabled_at or motivation.created_at).replace(second=0, microsecond=0)
        if due is not None and due >= enabled_at:
            for pid in _targets(motivation, state):
                yield (f"m{motivation.id}:c:{due:%Y%m%d%H%M}{_suffix(motivation, pid)}", pid,
                       {"kind": kind, "due": due.isoformat()})
    elif kind == "idle":
        activity, busy = state.activity()
        waiting = metrics.open_motivated(CREATED_BY_PREFIX + motivation.name)
        for pid in [motivation.project_id] if motivation.project_id else state.projects:
            last = activity.get(pid)
            if last is None or pid in busy or pid in waiting:
                continue
            if now - last >= timedelta(minutes=motivation.idle_minutes):
                yield (f"m{motivation.id}:idle:{pid}:{last:%Y%m%dT%H%M%S%f}", pid,
                       {"kind": kind, "last_activity": last.isoformat(), "idle_minutes": motivation.idle_minutes})
    elif kind == "threshold":
        rule = motivation.threshold or {}
        values = state.metric(rule["metric"])
        for pid in [motivation.project_id] if motivation.project_id else state.projects:
            value = round(values.get(pid, 0.0), 4)
            if metrics.compare(value, rule.get("op", ">"), rule["value"]):
                yield (f"m{motivation.id}:t:{pid}:{metrics.window_of(rule['metric'], now)}", pid,
                       {"kind": kind, "metric": rule["metric"], "value": value, "threshold": rule["value"]})


def _event_trigger(event_type: str, bead_id: int, title: str | None, event_id: str | None, data: dict) -> dict:
    trigger = {"kind": "event", "event": event_type, "event_id": event_id, "bead_id": bead_id, "title": title}
    for key in ("command", "exit_code", "reason", "source"):
        if data.get(key) is not None:
            trigger[key] = str(data[key])[:500] if isinstance(data[key], str) else data[key]
    return trigger


def catch_up_closed(motivation: Motivation, now: datetime, wake: Wake = None) -> Counter:
    """bead.closed events can be missed (a process died between commit and emit): fire from the database."""
    done: Counter = Counter()
    since = max(motivation.enabled_at or motivation.created_at, now - CATCHUP_WINDOW)
    if motivation.scan_cursor is not None:
        since = max(since, motivation.scan_cursor - CATCHUP_OVERLAP)
    query = (select(Bead.id, Bead.project_id, Bead.title, Bead.closed_at)
             .where(Bead.status == "closed", Bead.closed_at >= since, Bead.closed_at <= now,
                    ~Bead.created_by.startswith(CREATED_BY_PREFIX) | Bead.created_by.is_(None))
             .order_by(Bead.closed_at, Bead.id).limit(CATCHUP_LIMIT))
    if motivation.project_id is not None:
        query = query.where(Bead.project_id == motivation.project_id)
    rows = db.session.execute(query).all()
    keys = {row.id: f"m{motivation.id}:e:{row.id}" for row in rows}
    taken = select(MotivationFiring.dedup_key).where(MotivationFiring.dedup_key.in_(list(keys.values())))
    fired = set(db.session.scalars(taken).all()) if keys else set()
    for row in rows:
        if keys[row.id] in fired or is_motivated(db.session.get(Bead, row.id)):
            continue
        firing = fire(motivation.id, keys[row.id], row.project_id,
                      _event_trigger("bead.closed", row.id, row.title, None, {"source": "catch-up"}),
                      now=now, wake=wake)
        done[firing.outcome if firing else "taken"] += 1
    if rows:
        newest = rows[-1].closed_at
        behind = Motivation.scan_cursor.is_(None) | (Motivation.scan_cursor < newest)
        db.session.execute(update(Motivation).where(Motivation.id == motivation.id, behind)
                           .values(scan_cursor=newest, updated_at=Motivation.updated_at))
        db.session.commit()
    return done


def run_tick(now: datetime | None = None, wake: Wake = None) -> dict:
    """One Beat tick: every enabled interval/calendar/idle/threshold motivation, the bead.closed catch-up and
    the repair of pending firings. Safe to run concurrently: the dedup keys make each occasion fire once."""
    now = now or utcnow()
    state, done = TickState(now), Counter()
    motivations = db.session.scalars(select(Motivation).where(Motivation.enabled.is_(True))
                                     .order_by(Motivation.id)).all()
    for motivation_id in [m.id for m in motivations]:
        motivation = db.session.get(Motivation, motivation_id)
        if motivation is None or not motivation.enabled:
            continue
        try:
            if motivation.kind == "event":
                if motivation.event == "bead.closed":
                    done.update(catch_up_closed(motivation, now, wake))
                continue
            for key, project_id, trigger in list(occasions(motivation, state)):
                firing = fire(motivation.id, key, project_id, trigger, now=now, wake=wake)
                done[firing.outcome if firing else "taken"] += 1
        except Exception:  # noqa: BLE001 (one broken motivation must not stop the others)
            db.session.rollback()
            log.exception("motivation %s could not be evaluated", motivation_id)
            done["errors"] += 1
    done["repaired"] = repair_pending(now, wake)
    done["motivations"] = len(motivations)
    return dict(done)


def fire_for_event(event: dict, now: datetime | None = None, wake: Wake = None) -> list[MotivationFiring]:
    """The enabled event motivations for this event fire now (never for a bead a motivation made)."""
    event_type, bead_id = event.get("type"), event.get("bead_id")
    if event_type not in EVENT_TYPES or bead_id is None:
        return []
    found = db.session.scalars(select(Motivation).where(Motivation.enabled.is_(True), Motivation.kind == "event",
                                                        Motivation.event == event_type)
                               .order_by(Motivation.id)).all()
    bead = db.session.get(Bead, bead_id)
    if not found or is_motivated(bead):
        return []
    data = event.get("data") or {}
    project_id = event.get("project_id") or (bead.project_id if bead else None)
    title = data.get("title") or (bead.title if bead else None)
    occasion = bead_id if event_type in ONCE_PER_BEAD else (event.get("id") or uuid.uuid4().hex)
    out = []
    for motivation in found:
        if motivation.project_id is not None and motivation.project_id != project_id:
            continue
        firing = fire(motivation.id, f"m{motivation.id}:e:{occasion}", project_id,
                      _event_trigger(event_type, bead_id, title, event.get("id"), data), now=now, wake=wake)
        if firing is not None:
            out.append(firing)
    return out


def trigger_now(motivation_id: int, *, project_id: int | None = None, bead_id: int | None = None,
                actor: str | None = None, now: datetime | None = None, wake: Wake = None) -> MotivationFiring:
    """Fire at once with a fresh occasion; only enabled-ness is honoured (not the cooldown)."""
    motivation = get_motivation(motivation_id)
    if not motivation.enabled:
        raise Conflict(f"motivation {motivation.name!r} is disabled; enable it first", "enabled", code="disabled")
    title = None
    if bead_id is not None:
        bead = db.session.get(Bead, bead_id)
        if bead is None:
            raise NotFound(f"bead {bead_id} not found", "bead_id")
        if project_id is not None and project_id != bead.project_id:
            raise ValidationError("bead_id is in another project than project_id", "bead_id")
        project_id, title = bead.project_id, bead.title
    if motivation.project_id is not None:
        if project_id is not None and project_id != motivation.project_id:
            raise ValidationError(f"this motivation serves project {motivation.project_id} only", "project_id")
        project_id = motivation.project_id
    if project_id is not None and db.session.get(Project, project_id) is None:
        raise NotFound(f"project {project_id} not found", "project_id")
    if motivation.bead_template and project_id is None:
        raise ValidationError("project_id is required: this motivation creates a bead and serves every project",
                              "project_id")
    trigger = {"kind": motivation.kind, "manual": True, "by": actor, "bead_id": bead_id, "title": title}
    firing = fire(motivation.id, f"m{motivation.id}:manual:{uuid.uuid4().hex}", project_id, trigger,
                  now=now, honour_cooldown=False, wake=wake)
    if firing is None:  # disabled or deleted between the check and the claim
        raise Conflict(f"motivation {motivation.name!r} changed meanwhile; try again", "id")
    return firing
