"""Matching ready beads to idle agents: priority first, persona hints, concurrency limits.

Runs when something could make work possible (a bead created, unblocked or closed; an agent idle),
not on a timer; Ralph's tick is only the safety net. Decision beads are never dispatched.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict

import redis
from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import Agent, Bead, Persona, Project, Run
from app.services import settings as runtime
from app.services.bead_graph import READY
from app.services.errors import Conflict, ServiceError
from app.services.loop import LoopSettings, start_run

_BRACKET = re.compile(r"^\s*\[([\w -]+)\]")
_PHRASES = [re.compile(p, re.I) for p in (r"\bask (?:the |a |an )?([\w-]+) to\b", r"\bfor (?:the )?([\w-]+)\s*:",
                                           r"^\s*([\w-]+)\s*:")]
DEFAULT_PERSONA = "engineer"
CLAIM_MARK_MS = 5_000  # how long a claim in progress keeps other claimers off its bead (if its claimer died)
log = logging.getLogger("loom.dispatch")


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


def choose_agent(bead: Bead, candidates: list[Agent], personas: list[Persona], staffed: set[str]) -> Agent | None:
    """An idle agent of the hinted persona (waiting for one if the team has it but all are busy), else an
    engineer, else anyone."""
    if not candidates:
        return None
    wanted = persona_for(hint_words(bead), personas)
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
    projects: dict[int, tuple[bool, set[str]]] = {}  # per project: a slot free?, the personas it has
    for bead in candidates:
        if bead.project_id not in projects:
            project = db.session.get(Project, bead.project_id)
            limit = (project.max_concurrent if project is not None else None) or default_per_project
            running = db.session.scalar(select(func.count()).select_from(Bead).where(
                Bead.status == "in_progress", Bead.project_id == bead.project_id))
            staffed = set(db.session.scalars(select(Agent.persona).where(
                Agent.status != "complete", (Agent.project_id == bead.project_id) | Agent.project_id.is_(None))))
            projects[bead.project_id] = (running < limit, staffed)
        room, staffed = projects[bead.project_id]
        if not room:
            continue
        wanted = persona_for(hint_words(bead), personas)
        if wanted in staffed and wanted != agent.persona:
            continue  # a bead for a persona the team has: it waits for one of those
        try:
            run = start_unless_being_claimed(bead.id, agent.id, settings)
        except (Conflict, ServiceError):  # taken meanwhile, or the agent was: try the next / stop
            db.session.rollback()
            if db.session.scalar(select(Agent.status).where(Agent.id == agent_id)) != "idle":
                return None
            continue
        if run is not None:
            return run
    return None


def start_unless_being_claimed(bead_id: int, agent_id: int, settings: LoopSettings) -> Run | None:
    """start_run, or None when another hand-off or dispatch pass is claiming this bead right now.

    Agents finishing at the same moment scan the same ready list and would all go for its first bead: all
    but one claim would then fail after a round of statements each. A short-lived Redis mark per bead sends
    the others on to the next bead at the cost of one Redis command. The mark is advisory (Redis down: no
    marks); the claim itself is still the atomic compare-and-set of claim_bead."""
    key = f"loom:claiming:{int(bead_id)}"
    client = current_app.extensions["loom.redis"]()
    try:
        if not client.set(key, str(agent_id), nx=True, px=CLAIM_MARK_MS):
            return None
    except redis.RedisError as exc:
        log.debug("claim mark for bead %s not set (%s): claiming unmarked", bead_id, exc)
        client = None
    try:
        return start_run(bead_id, agent_id, settings)
    finally:
        if client is not None:
            try:
                client.delete(key)
            except redis.RedisError:  # it expires on its own
                pass


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
    idle: dict[int | None, list[Agent]] = defaultdict(list)
    for agent in db.session.scalars(select(Agent).where(Agent.status == "idle").order_by(Agent.id)).all():
        idle[agent.project_id].append(agent)
    personas = list(db.session.scalars(select(Persona)).all())
    staffed: dict[int | None, set[str]] = defaultdict(set)
    for project_id, persona in db.session.execute(select(Agent.project_id, Agent.persona)
                                                  .where(Agent.status != "complete")).all():
        staffed[project_id].add(persona)
    limits = {p.id: p.max_concurrent or default_per_project for p in db.session.scalars(select(Project)).all()}
    started: list[tuple[int, int]] = []
    for bead in ready:
        if capacity <= 0:
            break
        if running.get(bead.project_id, 0) >= limits.get(bead.project_id, default_per_project):
            continue
        agent = choose_agent(bead, idle[bead.project_id] + idle[None], personas,
                             staffed[bead.project_id] | staffed[None])
        if agent is None:
            continue
        idle[agent.project_id].remove(agent)
        try:
            run = start_unless_being_claimed(bead.id, agent.id, settings)
        except (Conflict, ServiceError):  # someone else claimed it first, or it changed meanwhile
            db.session.rollback()
            continue
        if run is None:  # a hand-off is claiming it: the agent stays free for the next bead
            idle[agent.project_id].insert(0, agent)
            continue
        started.append((run.id, run.project_id))
        capacity -= 1
        running[bead.project_id] = running.get(bead.project_id, 0) + 1
    return started
