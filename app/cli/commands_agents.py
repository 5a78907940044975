"""`loom agent ...` and `loom persona ...`: the actors that work beads and the instructions they follow."""
from __future__ import annotations

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import AGENT_STATUSES, ID, given, paging
from app.cli.output import Column, emit_json, format_field, print_page, say

AGENT_COLUMNS: list[Column] = [
    ("ID", lambda a: a.get("id")),
    ("NAME", lambda a: a.get("name")),
    ("PERSONA", lambda a: a.get("persona")),
    ("STATUS", lambda a: a.get("status")),
    ("PROJECT", lambda a: a.get("project_id")),
    ("BEAD", lambda a: a.get("current_bead_id")),
]
PERSONA_COLUMNS: list[Column] = [
    ("NAME", lambda p: p.get("name")),
    ("TITLE", lambda p: p.get("title")),
    ("ROLE", lambda p: p.get("role")),
]


# --------------------------------------------------------------------------- agents

@cli.group()
def agent() -> None:
    """Agents: actors with a persona that claim and work beads."""


@agent.command("list")
@click.option("--project", "project_id", type=ID, help="Only this project's agents.")
@click.option("--status", type=click.Choice(AGENT_STATUSES))
@paging
@pass_session
def agent_list(session: Session, project_id: int | None, status: str | None, limit: int | None,
               offset: int | None) -> None:
    """List agents."""
    page = session.client().get("/agents", project_id=project_id, status=status, limit=limit, offset=offset)
    print_page(session, page, AGENT_COLUMNS, "agents")


@agent.command("create")
@click.argument("name")
@click.option("--persona", required=True, help="Persona name (see `loom persona list`).")
@click.option("--project", "project_id", type=ID, help="Project id (omit for a shared agent).")
@pass_session
def agent_create(session: Session, name: str, persona: str, project_id: int | None) -> None:
    """Create an agent."""
    created = session.client().post("/agents", given(name=name, persona=persona, project_id=project_id))
    say(session, created, f"Created agent {created['id']}: {created['name']} (persona {created['persona']})")


@agent.command("pause")
@click.argument("agent_id", metavar="ID", type=ID)
@pass_session
def agent_pause(session: Session, agent_id: int) -> None:
    """Stop dispatching work to an agent."""
    answer = session.client().post(f"/agents/{agent_id}/pause")
    say(session, answer, f"Agent {agent_id} is now {answer.get('status')}")


@agent.command("resume")
@click.argument("agent_id", metavar="ID", type=ID)
@pass_session
def agent_resume(session: Session, agent_id: int) -> None:
    """Resume a paused agent."""
    answer = session.client().post(f"/agents/{agent_id}/resume")
    say(session, answer, f"Agent {agent_id} is now {answer.get('status')}")


# --------------------------------------------------------------------------- personas

@cli.group()
def persona() -> None:
    """Personas: the instructions an agent works by."""


@persona.command("list")
@pass_session
def persona_list(session: Session) -> None:
    """List personas."""
    print_page(session, session.client().get("/personas"), PERSONA_COLUMNS, "personas")


@persona.command("show")
@click.argument("name")
@pass_session
def persona_show(session: Session, name: str) -> None:
    """Show a persona and its instructions (Markdown)."""
    found = session.client().get(f"/personas/{name}")
    if session.json:
        emit_json(found)
        return
    for key in ("name", "title", "role", "description", "hints"):
        if found.get(key):
            click.echo(f"{key}: {format_field(found[key])}")
    click.echo("")
    click.echo((found.get("instructions") or "(no instructions)").rstrip())
