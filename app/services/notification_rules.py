"""Who hears about an event: beads assigned to a person, decisions awaiting them, P0 beads created and system
alerts (provider down, budget exhausted, bead auto-blocked). Pure rules over the event and the users table."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.extensions import db
from app.models import Bead, User
from app.services.beads import AUTO_BLOCK_KINDS

NOTIFICATION_TYPES = ("bead.assigned", "decision.waiting", "bead.p0_created", "provider.down", "budget.exhausted",
                      "bead.auto_blocked")
DECIDERS = ("admin", "user")  # roles that may decide (decisions:write)


@dataclass(frozen=True)
class Draft:
    """One notification to one user, before preferences are applied."""

    user_id: int
    type: str
    title: str
    body: str = ""
    link: str | None = None
    priority: int | None = None
    project_id: int | None = None
    bead_id: int | None = None


def _people(roles: tuple[str, ...] = ("admin", "user", "viewer")) -> list[int]:
    return list(db.session.scalars(select(User.id).where(User.role.in_(roles), User.active.is_(True))
                                   .order_by(User.id)))


def _is_person(user_id: object) -> bool:
    return isinstance(user_id, int) and db.session.scalar(
        select(User.id).where(User.id == user_id, User.active.is_(True))) is not None


def _bead_drafts(event: dict, bead: Bead) -> list[Draft]:
    data, kind = event.get("data") or {}, event["type"]
    common = {"link": f"/beads/{bead.id}", "priority": bead.priority, "project_id": bead.project_id,
              "bead_id": bead.id}
    label = f"#{bead.id} {bead.title}"
    drafts: list[Draft] = []
    # What the event says, not the bead's state now: a late-processed event must not notify a later change.
    owner = data.get("owner_id") if kind == "bead.created" or (kind == "bead.updated" and data.get("owner_changed")) \
        else None
    if owner and _is_person(owner) and bead.type != "decision":
        drafts.append(Draft(owner, "bead.assigned", f"Assigned to you: {label}"[:300],
                            bead.description[:500], **common))
    if kind == "bead.created" and bead.type == "decision":
        deciders = [bead.owner_id] if _is_person(bead.owner_id) else _people(DECIDERS)
        question = (bead.meta or {}).get("question") or bead.description
        drafts += [Draft(uid, "decision.waiting", f"Decision awaiting you: {label}"[:300], str(question)[:500],
                         **{**common, "link": "/decisions"}) for uid in deciders]
    if kind == "bead.created" and data.get("priority", bead.priority) == 0:
        drafts += [Draft(uid, "bead.p0_created", f"P0 bead created: {label}"[:300], bead.description[:500], **common)
                   for uid in _people()]
    if kind == "bead.blocked" and data.get("block_kind") in AUTO_BLOCK_KINDS:
        owners = [bead.owner_id] if _is_person(bead.owner_id) else _people(("admin",))
        drafts += [Draft(uid, "bead.auto_blocked", f"Bead auto-blocked ({data.get('block_kind')}): {label}"[:300],
                         str(data.get("reason") or "")[:500], **common) for uid in owners]
    if kind == "budget.exhausted":
        people = set(_people(("admin",))) | ({bead.owner_id} if _is_person(bead.owner_id) else set())
        drafts += [Draft(uid, "budget.exhausted", f"Budget exhausted: {label}"[:300],
                         str(data.get("message") or "")[:500], **common) for uid in sorted(people)]
    return drafts


def drafts_for(event: dict) -> list[Draft]:
    """The notifications an event causes (none for most events)."""
    kind, data = event.get("type"), event.get("data") or {}
    if kind == "provider.health":
        if not (data.get("changed") and data.get("status") == "down"):
            return []
        name = data.get("name") or "provider"
        return [Draft(uid, "provider.down", f"Provider down: {name}"[:300], str(data.get("error") or "")[:500],
                      link="/providers") for uid in _people(("admin",))]
    if kind not in ("bead.created", "bead.updated", "bead.blocked", "budget.exhausted"):
        return []
    bead = db.session.get(Bead, event.get("bead_id")) if isinstance(event.get("bead_id"), int) else None
    if bead is None:
        return []
    seen: set[tuple[int, str]] = set()
    out = []
    for draft in _bead_drafts(event, bead):  # one notification per user and type for an event
        if (draft.user_id, draft.type) not in seen:
            seen.add((draft.user_id, draft.type))
            out.append(draft)
    return out
