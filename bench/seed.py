"""Bulk-loading a benchmark database: many beads (and their runs) in seconds, COPY on PostgreSQL.

The mix looks like an installation that has been used for a while: most beads closed (each with its
finished run), some open, some blocked (for people, escalations, provider trouble, budgets), about a
hundred in progress under a live lease, and a few rows Ralph must act on (`Actionable`).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.extensions import db
from app.models import Agent, Bead, Run, utcnow
from app.services import agents, projects

BLOCK_KINDS = ("user", "escalation", "loop", "provider", "budget", "auth")
TYPES = ("task",) * 6 + ("bug", "bug", "feature", "epic")


@dataclass
class Actionable:
    """Rows a Ralph tick acts on; `reset()` puts them back so every measured tick has the same work."""

    expired: list[int] = field(default_factory=list)  # in progress, lease ran out (half resumed, half reopened)
    recoverable: list[int] = field(default_factory=list)  # provider-blocked long enough ago to retry
    looping: list[int] = field(default_factory=list)  # open, dispatched too often: to be blocked
    zombies: list[int] = field(default_factory=list)  # agents working without a heartbeat

    @property
    def count(self) -> int:
        return len(self.expired) + len(self.recoverable) + len(self.looping) + len(self.zombies)


def _filled(table: sa.Table, row: dict, now: datetime) -> dict:
    """`row` plus every NOT NULL column's Python-side default (COPY and executemany do not apply them)."""
    out = dict(row)
    for column in table.columns:
        if column.name in out or column.nullable or column.primary_key or column.default is None:
            continue
        default = column.default
        out[column.name] = default.arg(None) if default.is_callable else default.arg
        if isinstance(out[column.name], datetime):
            out[column.name] = now
    return out


def insert_rows(table: sa.Table, rows: list[dict]) -> None:
    """Insert plain dict rows fast: COPY on PostgreSQL, one executemany elsewhere; then fix the id sequence."""
    if not rows:
        return
    now = utcnow()
    rows = [_filled(table, row, now) for row in rows]
    present = set().union(*rows)
    columns = [c.name for c in table.columns if c.name in present]
    rows = [{c: row.get(c) for c in columns} for row in rows]
    if db.engine.dialect.name == "postgresql":
        raw = db.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([json.dumps(v) if isinstance(v, dict | list) else v
                                        for v in (row[c] for c in columns)])
                if "id" in columns:
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                f"(SELECT max(id) FROM {table.name}))")
            raw.commit()
        finally:
            raw.close()
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text(f"ANALYZE {table.name}"))
    else:
        db.session.execute(table.insert(), rows)
        db.session.commit()


def make_team(projects_n: int, agents_per_project: int) -> tuple[list[int], list[int]]:
    """(project ids, agent ids): projects with idle engineers, created through the services."""
    project_ids, agent_ids = [], []
    for p in range(projects_n):
        project = projects.create_project(f"seeded-{p}", team=[], git_strategy="branch")
        project_ids.append(project.id)
        for a in range(agents_per_project):
            agent_ids.append(agents.create_agent(f"agent-{a}", "engineer", project_id=project.id).id)
    db.session.remove()
    return project_ids, agent_ids


def seed_beads(n: int, project_ids: list[int], agent_ids: list[int], first_id: int = 1,
               actionable: Actionable | None = None, seed: int = 7) -> Actionable:
    """Insert `n` beads with ids from `first_id` (plus runs); the first call also makes the actionable rows."""
    rnd, now = random.Random(seed + first_id), utcnow()
    beads_rows, runs_rows = [], []
    make_actionable = actionable is None
    actionable = actionable or Actionable()
    live = min(100, n // 100) if make_actionable else 0
    holders = agent_ids[:-2]  # the last two agents are the zombies
    for i in range(n):
        bead_id = first_id + i
        created = now - timedelta(days=90 * rnd.random())
        row = {"id": bead_id, "project_id": rnd.choice(project_ids), "title": f"seeded bead {bead_id}",
               "description": "Make the thing work; see the linked issue.", "type": rnd.choice(TYPES),
               "priority": rnd.choice((0, 1, 2, 2, 2, 3)), "status": "closed", "fencing_token": 1,
               "dispatch_count": 1, "created_at": created, "updated_at": created + timedelta(hours=1),
               "closed_at": created + timedelta(hours=1), "status_reason": "done: committed"}
        kind = rnd.random()
        if make_actionable and i < 10:  # a worker died holding these
            row |= {"status": "in_progress", "assigned_to": holders[i % len(holders)], "closed_at": None,
                    "lease_expires_at": now - timedelta(minutes=1), "status_reason": None}
            actionable.expired.append(bead_id)
        elif make_actionable and i < 15:
            row |= {"status": "blocked", "block_kind": "provider", "closed_at": None,
                    "updated_at": now - timedelta(hours=2), "status_reason": "provider down"}
            actionable.recoverable.append(bead_id)
        elif make_actionable and i < 20:
            row |= {"status": "open", "dispatch_count": 10, "closed_at": None, "status_reason": None}
            actionable.looping.append(bead_id)
        elif make_actionable and i < 20 + live:
            row |= {"status": "in_progress", "assigned_to": holders[i % len(holders)], "closed_at": None,
                    "lease_expires_at": now + timedelta(minutes=5), "status_reason": None}
        elif kind < 0.15:
            row |= {"status": "open", "closed_at": None, "status_reason": None, "dispatch_count": rnd.randint(0, 3)}
        elif kind < 0.20:
            row |= {"status": "blocked", "block_kind": rnd.choice(BLOCK_KINDS), "closed_at": None,
                    "updated_at": now - timedelta(seconds=rnd.randint(1, 60)), "status_reason": "waiting"}
            # (blocked within the last minute: Ralph retries provider blocks only 2 minutes after they blocked)
        beads_rows.append(row)
        if row["status"] in ("in_progress", "closed"):
            running = row["status"] == "in_progress"
            runs_rows.append({"bead_id": bead_id, "agent_id": row.get("assigned_to") or rnd.choice(holders),
                              "project_id": row["project_id"], "fencing_token": 1,
                              "status": "running" if running else "finished", "iterations": rnd.randint(1, 12),
                              "terminal_reason": None if running else "done: committed",
                              "started_at": created, "updated_at": created + timedelta(minutes=30),
                              "finished_at": None if running else created + timedelta(hours=1)})
    insert_rows(Bead.__table__, beads_rows)
    insert_rows(Run.__table__, runs_rows)
    if make_actionable:
        actionable.zombies = agent_ids[-2:]
    return actionable


def reset_actionable(actionable: Actionable) -> None:
    """Put Ralph's work back: leases expired again, provider blocks old again, loopers open, zombies working."""
    now = utcnow()
    expired = actionable.expired
    half = expired[: len(expired) // 2]
    db.session.execute(sa.update(Bead).where(Bead.id.in_(expired)).values(
        status="in_progress", lease_expires_at=now - timedelta(minutes=1), fencing_token=1,
        assigned_to=sa.select(Run.agent_id).where(Run.bead_id == Bead.id).limit(1).scalar_subquery()))
    db.session.execute(sa.update(Run).where(Run.bead_id.in_(expired)).values(status="running", resumes=0,
                                                                              finished_at=None))
    db.session.execute(sa.update(Run).where(Run.bead_id.in_(half)).values(resumes=3))  # these get reopened
    db.session.execute(sa.update(Bead).where(Bead.id.in_(actionable.recoverable)).values(
        status="blocked", block_kind="provider", updated_at=now - timedelta(hours=2)))
    db.session.execute(sa.update(Bead).where(Bead.id.in_(actionable.looping)).values(
        status="open", block_kind=None, dispatch_count=10))
    db.session.execute(sa.update(Agent).where(Agent.id.in_(actionable.zombies)).values(
        status="working", current_bead_id=None, last_heartbeat_at=now - timedelta(hours=1)))
    db.session.commit()
