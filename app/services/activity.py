"""The team's activity feed: a fixed list of event types become readable lines; the same actor doing the same
thing in the same project within five minutes is one line with a count, not a flood.

`record_event()` is idempotent per bus event (a redelivered task changes nothing) and announces each new or
grown line as `activity.created` / `activity.updated`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Activity, Agent, utcnow
from app.services.errors import ValidationError
from app.services.events import emit
from app.services import paging

AGGREGATE_WINDOW = timedelta(minutes=5)
KEEP_ITEMS = 10  # beads (or other subjects) remembered on an aggregated line
KEEP_EVENT_IDS = 50  # bus events folded into a line, so a redelivery is recognised
KEEP_BEADS = 1000  # different beads counted on a line (past that, the line counts events)

# type -> (verb for one, verb for many): what the feed says about each event type it keeps.
ACTIVITY_TYPES: dict[str, tuple[str, str]] = {
    "bead.created": ("created", "created {n} beads"),
    "bead.claimed": ("claimed", "claimed {n} beads"),
    "bead.closed": ("closed", "closed {n} beads"),
    "bead.blocked": ("blocked", "blocked {n} beads"),
    "bead.commented": ("commented on", "commented {n} times"),
    "bead.deleted": ("deleted", "deleted {n} beads"),
    "test.failed": ("failed the acceptance check of", "failed {n} acceptance checks"),
    "motivation.fired": ("fired motivation", "fired motivations {n} times"),
    "budget.exhausted": ("exhausted the budget on", "exhausted budgets {n} times"),
    "provider.health": ("reported provider", "reported provider changes {n} times"),
    "pair.paused": ("paused the loop of", "paused {n} loops"),
    "pair.resumed": ("handed back to the loop", "handed back {n} beads"),
}


def wanted(event: dict) -> bool:
    """Is this event one the feed keeps? (Provider health only when the status changed.)"""
    if event.get("type") not in ACTIVITY_TYPES:
        return False
    if event["type"] == "provider.health":
        return bool((event.get("data") or {}).get("changed"))
    return True


def actor_of(event: dict) -> str:
    """Who did it: the person or motivation named in the event, else the agent involved, else `system`."""
    data = event.get("data") or {}
    for key in ("actor", "author", "created_by", "paused_by", "resumed_by", "decided_by"):
        if isinstance(data.get(key), str) and data[key]:
            return data[key][:100]
    agent_id = event.get("agent_id") or (data.get("assigned_to") if event.get("type") == "bead.closed" else None)
    if isinstance(agent_id, int):
        name = db.session.scalar(select(Agent.name).where(Agent.id == agent_id))
        if name:
            return name[:100]
    return "system"


def _subject(event: dict) -> dict:
    """The thing acted on, as a small dict the page can link."""
    data = event.get("data") or {}
    subject = {"bead_id": event.get("bead_id"), "title": data.get("title") or data.get("name")}
    if event["type"] == "provider.health":
        subject["status"] = data.get("status")
    if event["type"] == "motivation.fired":
        subject["detail"] = data.get("detail")
    if event["type"] in ("budget.exhausted", "bead.blocked"):
        subject["reason"] = data.get("message") or data.get("reason")
    return {k: v for k, v in subject.items() if v is not None}


def _describe(item: dict) -> str:
    parts = [f"#{item['bead_id']}"] if item.get("bead_id") else []
    if item.get("title"):
        parts.append(str(item["title"])[:120])
    if item.get("status"):
        parts.append(f"({item['status']})")
    return " ".join(parts)


def summarise(type: str, actor: str, items: list[dict], count: int, beads: int | None = None) -> str:
    """The line's text. `beads`: how many different beads its events were about (the same bead claimed twice is
    one bead, two times)."""
    one, many = ACTIVITY_TYPES[type]
    if count == 1:
        text = f"{actor} {one} {_describe(items[0]) if items else ''}".rstrip()
        reason = items[0].get("reason") if items else None
        return f"{text}: {str(reason)[:200]}" if reason else text
    recent = list(dict.fromkeys(i["bead_id"] for i in reversed(items) if i.get("bead_id")))[:5][::-1]
    shown = ", ".join(f"#{bead_id}" for bead_id in recent)
    if beads is not None and beads < count and "{n} beads" in many:
        return f"{actor} {many.format(n=beads)}, {count} times" + (f" ({shown})" if shown else "")
    return f"{actor} {many.format(n=count)}" + (f" ({shown})" if shown else "")


def _fold_in(line: Activity, event: dict, subject: dict, now: datetime) -> None:
    data = dict(line.data or {})
    data["items"] = (list(data.get("items", [])) + [subject])[-KEEP_ITEMS:]
    data["event_ids"] = (list(data.get("event_ids", [])) + [event.get("id")])[-KEEP_EVENT_IDS:]
    beads = data.get("beads")  # different beads so far (absent on lines written before it was kept)
    if isinstance(beads, list) and event.get("bead_id") and event["bead_id"] not in beads \
            and len(beads) < KEEP_BEADS:
        data["beads"] = beads + [event["bead_id"]]
    line.data = data
    line.count += 1
    line.last_at = now
    if event.get("bead_id"):
        line.bead_id = event["bead_id"]
    known = data.get("beads")
    line.summary = summarise(line.type, line.actor, data["items"], line.count,
                             len(known) if isinstance(known, list) and len(known) < KEEP_BEADS else None)


def record_event(event: dict, now: datetime | None = None,
                 lock: Callable[[str], AbstractContextManager] | None = None) -> Activity | None:
    """Turn one bus event into a feed line (new, or folded into the actor's recent line). None: not kept.

    `lock(name)` serialises the events of one actor, type and project (concurrent workers would otherwise each
    start a line of their own); the worker passes a Redis lock, which works on every database."""
    if not wanted(event):
        return None
    actor = actor_of(event)
    key = f"{actor}|{event['type']}|{event.get('project_id')}"
    with (lock(hashlib.sha1(key.encode()).hexdigest()[:16]) if lock else nullcontext()):
        return _record(event, actor, now or utcnow())


def _record(event: dict, actor: str, now: datetime) -> Activity | None:
    event_id = event.get("id")
    if event_id and db.session.scalar(select(Activity.id).where(Activity.event_id == event_id)) is not None:
        return None  # the first event of a line, seen again
    subject = _subject(event)
    recent = db.session.scalars(
        select(Activity).where(Activity.actor == actor, Activity.type == event["type"],
                               Activity.project_id.is_(None) if event.get("project_id") is None
                               else Activity.project_id == event["project_id"],
                               Activity.last_at >= now - AGGREGATE_WINDOW)
        .order_by(Activity.last_at.desc()).limit(1)).first()
    if recent is not None:
        if event_id and event_id in (recent.data or {}).get("event_ids", []):
            db.session.rollback()
            return None  # folded in already
        _fold_in(recent, event, subject, now)
        line, kind = recent, "activity.updated"
    else:
        line = Activity(type=event["type"], actor=actor, project_id=event.get("project_id"),
                        bead_id=event.get("bead_id"), agent_id=event.get("agent_id"), event_id=event_id,
                        data={"items": [subject], "event_ids": [event_id],
                              "beads": [event["bead_id"]] if event.get("bead_id") else []},
                        count=1, created_at=now, last_at=now,
                        summary=summarise(event["type"], actor, [subject], 1))
        db.session.add(line)
        kind = "activity.created"
    db.session.flush()
    view = activity_view(line)  # read before the commit expires the line
    db.session.commit()
    emit(kind, project_id=view["project_id"], bead_id=view["bead_id"], agent_id=view["agent_id"], data=view)
    return line


def activity_view(line: Activity) -> dict:
    out = line.to_dict()
    out["data"] = {"items": (line.data or {}).get("items", [])}
    return out


def list_activity(*, project_id: int | None = None, type: str | None = None, actor: str | None = None,
                  since: datetime | None = None, limit: int = 50, offset: int = 0) -> tuple[list[Activity], int]:
    """Newest first (by the last repeat)."""
    if type is not None and type not in ACTIVITY_TYPES:
        raise ValidationError(f"type must be one of {', '.join(ACTIVITY_TYPES)}", "type")
    query = select(Activity)
    if project_id is not None:
        query = query.where(Activity.project_id == project_id)
    if type is not None:
        query = query.where(Activity.type == type)
    if actor is not None:
        query = query.where(Activity.actor == actor)
    if since is not None:
        query = query.where(Activity.last_at >= since)
    return paging.page(query, Activity.last_at.desc(), Activity.id.desc(), limit=limit, offset=offset)
