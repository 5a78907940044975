"""The default set of motivations, created once by `flask loom init` (marked built-in; edit or disable them)."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Motivation, Persona
from app.services.motivations import create_motivation

SEED_PREFIX = "loom:"  # created_by of a seeded motivation: finds it again even after a rename

# QA review on close ships disabled: it doubles the LLM work of every project (each closed bead gets a review
# bead), which a team should choose; `make run`'s demo would also grow three review beads.
DEFAULTS: list[dict] = [
    {"seed": "qa-review-on-close", "name": "QA review when a bead closes", "kind": "event", "event": "bead.closed",
     "persona": "qa-engineer", "wake_agent": True, "enabled": False,
     "description": "Every closed bead gets a review by QA. Beads made by motivations are not reviewed again.",
     "bead_template": {"title": "[qa] Review #{bead_id}: {title}", "priority": 2, "description":
                       "Bead #{bead_id} ({title}) was closed in {project}. Review the change: read its diff, run "
                       "the tests, and create a bug bead for anything that is wrong. Finish with `done`."}},
    {"seed": "fix-failing-tests", "name": "Fix failing tests", "kind": "event", "event": "test.failed",
     "persona": "engineer", "wake_agent": True, "enabled": True, "cooldown_s": 0,
     "description": "An acceptance command that fails gets a bug bead (once per bead).",
     "bead_template": {"title": "Fix failing tests of #{bead_id}: {title}", "type": "bug", "priority": 1,
                       "description": "The acceptance check of bead #{bead_id} ({title}) failed:\n\n    {command}\n\n"
                       "exited with {exit_code}. Find the cause and fix it so the command passes."}},
    {"seed": "daily-standup", "name": "Daily standup summary", "kind": "calendar", "cron": "0 9 * * 1-5",
     "persona": "engineering-manager", "wake_agent": True, "enabled": False,
     "description": "On weekday mornings (09:00 UTC) the engineering manager summarises each project.",
     "bead_template": {"title": "Standup summary for {project}, {date}", "priority": 3, "description":
                       "Summarise {project}: what closed since the last standup, what is blocked and why, and "
                       "what comes next. Put the summary in a comment on this bead, then finish with `done`."}},
    {"seed": "idle-project-check", "name": "Idle project check", "kind": "idle", "idle_minutes": 120,
     "persona": "product-manager", "wake_agent": True, "enabled": False,
     "description": "A project with nothing happening for two hours gets a planning bead.",
     "bead_template": {"title": "Plan the next work for {project} (idle for {idle_minutes} min)", "priority": 2,
                       "description": "Nothing has happened in {project} for {idle_minutes} minutes. Look at "
                       "what is open and blocked, and create the beads that move the project forward."}},
    {"seed": "cost-alert", "name": "Cost alert", "kind": "threshold",
     "threshold": {"metric": "cost_usd_today", "op": ">", "value": 10}, "persona": "cto", "wake_agent": True,
     "enabled": False, "description": "A project that spends more than $10 on LLM calls in a day alerts the CTO.",
     "bead_template": {"title": "Cost alert: {project} spent ${value} today", "priority": 1, "description":
                       "{project} has spent ${value} on LLM requests today (the alert is at ${threshold}). Find "
                       "out which beads cost the most and decide whether to pause agents or set a budget."}},
]


def ensure_default_motivations() -> list[str]:
    """Create the default motivations that were never created (skipping any whose persona is missing)."""
    seeded = set(db.session.scalars(select(Motivation.created_by).where(Motivation.builtin.is_(True))).all())
    personas = set(db.session.scalars(select(Persona.name)).all())
    added = []
    for spec in DEFAULTS:
        fields = {k: v for k, v in spec.items() if k != "seed"}
        if SEED_PREFIX + spec["seed"] in seeded or fields["persona"] not in personas:
            continue
        if db.session.scalar(select(Motivation.id).where(Motivation.name == fields["name"])):
            continue  # someone made one by that name: theirs stays
        create_motivation(fields, actor=SEED_PREFIX + spec["seed"], builtin=True)
        added.append(fields["name"])
    return added
