"""`flask --app app loom ...`: server-side administration run next to the database (init, seed)."""
from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from app.services import beads, pricing, projects
from app.services.motivation_defaults import ensure_default_motivations
from app.services.personas import load_builtin_personas
from app.services.users import ensure_admin

DEMO_BEADS = [
    ("Create the calculator module", "Write calc.py with add, subtract, multiply and divide; divide refuses zero.",
     ["feature"]),
    ("Write tests for the calculator", "Cover every function of calc.py, including division by zero.", ["qa"]),
    ("Document the calculator", "Add a README section that shows how to use calc.py.", ["docs"]),
]


@click.group("loom")
def cli() -> None:
    """Loom server administration."""


@cli.command("init")
@with_appcontext
def init() -> None:
    """Migrate the database to the newest schema, load default personas and motivations, create the first admin."""
    upgrade()
    added = load_builtin_personas()
    if added:
        click.echo(f"loaded personas: {', '.join(added)}")
    motivations = ensure_default_motivations()
    if motivations:
        click.echo(f"created default motivations: {', '.join(motivations)}")
    if pricing.seed_default_prices():
        click.echo("loaded default model prices (GET /api/v1/analytics/prices)")
    generated = ensure_admin(current_app.config["ADMIN_PASSWORD"])
    if generated:
        # Kept (0600) beside the database so the local launcher can show it again; delete it once changed.
        path = Path(current_app.config["DATA_DIR"]) / "initial_admin_password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generated + "\n")
        click.echo(f"created the first admin user: admin / {generated}  (change it after logging in)")


@cli.command("demo")
@with_appcontext
def demo() -> None:
    """On an empty installation, create a demo project whose three beads run one after the other."""
    if projects.list_projects(limit=1)[1]:
        click.echo("projects exist already: no demo project created")
        return
    team = [p.strip() for p in current_app.config["DEFAULT_TEAM"].split(",") if p.strip()] + ["docs-writer"]
    project = projects.create_project("demo-calculator", description="A tiny calculator built by Loom's agents.",
                                      git_strategy="direct", team=team)
    previous: list[int] = []
    for title, description, tags in DEMO_BEADS:
        bead = beads.create_bead(project.id, title, description=description, tags=tags, blocked_by=previous,
                                 created_by="demo")
        previous = [bead.id]
    click.echo(f"created the demo project #{project.id} with {len(DEMO_BEADS)} beads")
