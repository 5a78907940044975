"""The `loom` command line: a standalone client of the Loom REST API over httpx (like the Go loomctl).

It imports nothing from the rest of the `app` package, so starting it stays light (no Flask, SQLAlchemy
or Celery). Layout: `group` holds the root click group and `main`; `client` the HTTP client, saved
credentials and errors; `output` the printing helpers; `options` shared option types; one
`commands_*` module per resource. Importing the command modules here attaches their commands to `cli`.
"""
from __future__ import annotations

from app.cli import (  # noqa: F401  (imported for their side effect: registering commands on `cli`)
    commands_activity,
    commands_agents,
    commands_analytics,
    commands_auth,
    commands_beads,
    commands_budgets,
    commands_motivations,
    commands_pair,
    commands_projects,
    commands_providers,
    commands_users,
)
from app.cli.group import cli, main

__all__ = ["cli", "main"]
