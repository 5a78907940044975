"""Matching ready beads to idle agents: priority first, persona hints, concurrency limits.

Runs when something could make work possible (a bead created, unblocked or closed; an agent idle),
not on a timer; Ralph's tick is only the safety net. Decision beads are never dispatched.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import NamedTuple, TypeVar

from sqlalchemy import func, select

from app.extensions import db
from app.redis_locks import best_effort_lock
from app.models import Agent, Bead, Persona, Project, Run
from app.services import settings as runtime
from app.services.bead_graph import READY, AtCapacity
from app.services.errors import Conflict, ServiceError
from app.services.loop import LoopSettings, start_run

_BRACKET = re.compile(r"^\s*\[([\w -]+)\]")
_PHRASES = [re.compile(p, re.I) for p in (r"\bask (?:the |a |an )?([\w-]+) to\b", r"\bfor (?:the )?([\w-]+)\s*:",
                                           r"^\s*([\w-]+)\s*:")]
DEFAULT_PERSONA = "engineer"
AgentLike = TypeVar("AgentLike")  # an Agent row, or an IdleAgent read off one: what choose_agent picks from
CLAIM_LOCK_S = 5  # a project's claims lock: held for one claim (milliseconds); waited for at most this long


def hint_words(bead: Bead) -> list[str]:
    """Routing hints: the bead's tags, a `[qa]`-style title prefix, `ask the reviewer to`, `for devops:`."""
    words = [t.lower() for t in bead.tags]
    bracket = _BRACKET.match(bead.title)
    if bracket:
        words.append(bracket.group(1).strip().lower())
    for pattern in _PHRASES:
        match = pattern.search(bead.title)
        if match:
            words.append(match.group(1).lower())
    return words


def persona_for(words: list[str], personas: list[Persona]) -> str | None:
    """The first hint that names a persona, by name, name prefix, or one of its front-matter hints."""
    for word in words:
        for persona in personas:
            hints = [h.lower() for h in (persona.meta or {}).get("hints", [])]
            if word == persona.name or persona.name.startswith(word + "-") or word in hints:
                return persona.name
    return None


class IdleAgent(NamedTuple):
    id: int
    persona: str
    project_id: int | None


def choose_agent(wanted: str | None, candidates: list[AgentLike], staffed: set[str]) -> AgentLike | None:
    """An idle agent of the persona a bead's hints name (`wanted`; waiting for one if the team has it but all are
    busy), else an engineer, else anyone."""
    if not candidates:
        return None
    if wanted not in staffed:
        wanted = None
    for persona in (wanted, DEFAULT_PERSONA):
        for agent in candidates:
            if persona and agent.persona == persona:
                return agent
    return candidates[0] if wanted is None else None


def work_waiting() -> bool:
    """A ready bead and an idle agent exist: what makes a dispatch pass worth a task (one cheap query)."""
    ready = select(Bead.id).where(READY, Bead.type != "decision").exists()
    idle = select(Agent.id).where(Agent.status == "idle").exists()
    return bool(db.session.scalar(select(ready & idle)))


HANDOFF_SCAN = 20  # ready beads looked at for a hand-off


def hand_off(agent_id: int, settings: LoopSettings, max_concurrent: int, max_per_project: int) -> Run | None:
    """The agent that just finished a bead takes the next ready bead it suits, at once, in the finishing
    worker: no installation-wide dispatch pass (and its lock) between a bead's end and the next one's start,
    so worker processes scale. Limits are checked as a dispatch pass would (the agent's own bead just freed its
    slot); every claim is still the same atomic compare-and-set, so a racing dispatch pass is harmless."""
    if not runtime.get_setting("dispatch.enabled", True):
        return None
    agent = db.session.get(Agent, agent_id)
    if agent is None or agent.status != "idle":
        return None
    max_concurrent = runtime.get_setting("dispatch.max_concurrent", max_concurrent)
    running_total = db.session.scalar(select(func.count()).select_from(Bead).where(Bead.status == "in_progress"))
    if running_total >= max_concurrent:
        return None
    query = select(Bead).where(READY, Bead.type != "decision", Bead.assigned_to.is_(None))
    if agent.project_id is not None:
        query = query.where(Bead.project_id == agent.project_id)
    candidates = db.session.scalars(query.order_by(Bead.priority, Bead.created_at, Bead.id).limit(HANDOFF_SCAN)).all()
    if not candidates:
        return None
    personas = list(db.session.scalars(select(Persona)).all())
    default_per_project = runtime.get_setting("dispatch.max_per_project", max_per_project)
    staffed: dict[int, set[str]] = {}
    choices = []  # (bead id, project id, the project's limit), read before any claim ends this transaction
    for bead in candidates:
        if bead.project_id not in staffed:
            staffed[bead.project_id] = set(db.session.scalars(select(Agent.persona).where(
                Agent.status != "complete", (Agent.project_id == bead.project_id) | Agent.project_id.is_(None))))
        wanted = persona_for(hint_words(bead), personas)
        if wanted in staffed[bead.project_id] and wanted != agent.persona:
            continue  # a bead for a persona the team has: it waits for one of those
        project = db.session.get(Project, bead.project_id)
        choices.append((bead.id, bead.project_id, (project.max_concurrent if project else None) or default_per_project))
    full: set[int] = set()
    for bead_id, project_id, limit in choices:
        if project_id in full:
            continue
        try:
            run = claim_in_turn(bead_id, project_id, limit, agent_id, settings, max_concurrent)
        except AtCapacity:  # the installation filled up meanwhile
            db.session.rollback()
            return None
        except ProjectFull:  # its other beads would find it full too
            db.session.rollback()
            full.add(project_id)
            continue
        except (Conflict, ServiceError):  # the agent was taken meanwhile (or the bead changed): stop / go on
            db.session.rollback()
            if db.session.scalar(select(Agent.status).where(Agent.id == agent_id)) != "idle":
                return None
            continue
        if run is not None:
            return run
    return None


class ProjectFull(Exception):
    """The project already runs as many beads as its limit allows."""


def claim_in_turn(bead_id: int, project_id: int, limit: int, agent_id: int, settings: LoopSettings,
                  max_concurrent: int) -> Run | None:
    """start_run, one claim at a time per project; None when the bead was taken meanwhile. Raises ProjectFull when
    the project runs `limit` beads, AtCapacity when the installation runs `max_concurrent`.

    Hand-offs of agents finishing at the same moment and dispatch passes all claim through here. Under a
    per-project Redis lock the bead is checked to be still ready and the project's running count is read
    afresh, so the project's limit holds (two claimers no longer both see a free slot) and a claimer whose
    candidate list went stale while it waited moves on after one query instead of a lost claim. Redis down
    (or the lock stuck for CLAIM_LOCK_S): claims go ahead unlocked; claim_bead's compare-and-set still decides
    who gets a bead. Claims in different projects do not wait for each other; the installation's limit is checked
    inside the claim's own transaction (bead_graph.claim_bead), so it holds for them too."""
    with best_effort_lock(f"loom:lock:claims:{int(project_id)}", CLAIM_LOCK_S, CLAIM_LOCK_S):
        if db.session.scalar(select(Bead.id).where(Bead.id == bead_id, READY, Bead.assigned_to.is_(None))) is None:
            return None
        running = db.session.scalar(select(func.count()).select_from(Bead).where(
            Bead.status == "in_progress", Bead.project_id == project_id))
        if running >= limit:
            raise ProjectFull(project_id)
        return start_run(bead_id, agent_id, settings, max_running=max_concurrent)


def dispatch_ready(settings: LoopSettings, max_concurrent: int, max_per_project: int) -> list[tuple[int, int]]:
    """Start runs for as many ready beads as limits and idle agents allow; returns (run id, project id)s."""
    if not runtime.get_setting("dispatch.enabled", True):
        return []
    max_concurrent = runtime.get_setting("dispatch.max_concurrent", max_concurrent)
    default_per_project = runtime.get_setting("dispatch.max_per_project", max_per_project)
    running = dict(db.session.execute(select(Bead.project_id, func.count()).where(Bead.status == "in_progress")
                                      .group_by(Bead.project_id)).all())
    capacity = max_concurrent - sum(running.values())
    if capacity <= 0:
        return []
    ready = db.session.scalars(select(Bead).where(READY, Bead.type != "decision")
                               .order_by(Bead.priority, Bead.created_at, Bead.id).limit(min(500, capacity * 4))).all()
    if not ready:
        return []
    idle: dict[int | None, list[IdleAgent]] = defaultdict(list)
    for agent in db.session.execute(select(Agent.id, Agent.persona, Agent.project_id).where(Agent.status == "idle")
                                    .order_by(Agent.id)).all():
        idle[agent.project_id].append(IdleAgent(*agent))
    personas = list(db.session.scalars(select(Persona)).all())
    staffed: dict[int | None, set[str]] = defaultdict(set)
    for project_id, persona in db.session.execute(select(Agent.project_id, Agent.persona)
                                                  .where(Agent.status != "complete")).all():
        staffed[project_id].add(persona)
    limits = {p.id: p.max_concurrent or default_per_project for p in db.session.scalars(select(Project)).all()}
    # What the matching reads of each bead and agent, taken now: every claim commits, which expires loaded rows
    # (reading one afterwards would cost a query per bead or agent looked at).
    wanted = [(bead.id, bead.project_id, persona_for(hint_words(bead), personas)) for bead in ready]
    started: list[tuple[int, int]] = []
    for bead_id, project_id, persona in wanted:
        if capacity <= 0:
            break
        if running.get(project_id, 0) >= limits.get(project_id, default_per_project):
            continue
        agent = choose_agent(persona, idle[project_id] + idle[None], staffed[project_id] | staffed[None])
        if agent is None:
            continue
        idle[agent.project_id].remove(agent)
        limit = limits.get(project_id, default_per_project)
        try:
            run = claim_in_turn(bead_id, project_id, limit, agent.id, settings, max_concurrent)
        except AtCapacity:  # hand-offs filled the installation meanwhile
            db.session.rollback()
            break
        except ProjectFull:  # hand-offs filled the project meanwhile: the agent stays free for other projects
            db.session.rollback()
            running[project_id] = limit
            idle[agent.project_id].insert(0, agent)
            continue
        except (Conflict, ServiceError):  # someone else claimed it first, or it changed meanwhile
            db.session.rollback()
            continue
        if run is None:  # a hand-off took it meanwhile: the agent stays free
            idle[agent.project_id].insert(0, agent)
            continue
        started.append((run.id, run.project_id))
        capacity -= 1
        running[project_id] = running.get(project_id, 0) + 1
    return started
