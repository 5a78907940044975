"""`flask --app app loom ...`: server-side administration run next to the database (init, seed)."""
from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from app.services.personas import load_builtin_personas
from app.services.users import ensure_admin


@click.group("loom")
def cli() -> None:
    """Loom server administration."""


@cli.command("init")
@with_appcontext
def init() -> None:
    """Migrate the database to the newest schema, load default personas, create the first admin."""
    upgrade()
    added = load_builtin_personas()
    if added:
        click.echo(f"loaded personas: {', '.join(added)}")
    generated = ensure_admin(current_app.config["ADMIN_PASSWORD"])
    if generated:
        # Kept (0600) beside the database so the local launcher can show it again; delete it once changed.
        path = Path(current_app.config["DATA_DIR"]) / "initial_admin_password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generated + "\n")
        click.echo(f"created the first admin user: admin / {generated}  (change it after logging in)")
