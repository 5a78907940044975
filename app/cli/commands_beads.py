"""`loom bead ...`: list, create, show, claim, unblock and close beads, and `bead dep` for their blockers."""
from __future__ import annotations

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import BEAD_STATUSES, BEAD_TYPES, ID, PRIORITY, given, paging
from app.cli.output import Column, format_field, format_time, print_page, print_record, say, truncate

BEAD_FIRST = ("id", "title", "status", "priority", "type", "project_id", "assigned_to", "tags", "blocked_by",
              "blocks", "status_reason", "acceptance", "description")
BEAD_COLUMNS: list[Column] = [
    ("ID", lambda b: b.get("id")),
    ("P", lambda b: f"P{b['priority']}" if b.get("priority") is not None else None),
    ("STATUS", lambda b: b.get("status")),
    ("TYPE", lambda b: b.get("type")),
    ("ASSIGNEE", lambda b: b.get("assigned_to")),
    ("TITLE", lambda b: truncate(b.get("title"))),
]


@cli.group()
def bead() -> None:
    """Beads: work items with priorities, tags and blocking dependencies."""


@bead.command("list")
@click.option("--project", "project_id", type=ID, help="Only this project's beads.")
@click.option("--status", type=click.Choice(BEAD_STATUSES))
@click.option("--priority", type=PRIORITY, help="0-3 or P0-P3.")
@click.option("--type", "bead_type", type=click.Choice(BEAD_TYPES))
@click.option("--assigned-to", type=ID, help="Agent id.")
@click.option("--tag")
@paging
@pass_session
def bead_list(session: Session, project_id: int | None, status: str | None, priority: int | None,
              bead_type: str | None, assigned_to: int | None, tag: str | None, limit: int | None,
              offset: int | None) -> None:
    """List beads, P0 first."""
    page = session.client().get("/beads", project_id=project_id, status=status, priority=priority,
                                type=bead_type, assigned_to=assigned_to, tag=tag, limit=limit, offset=offset)
    print_page(session, page, BEAD_COLUMNS, "beads")


@bead.command("create")
@click.argument("title")
@click.option("--project", "project_id", type=ID, required=True, help="Project id.")
@click.option("--description")
@click.option("--priority", type=PRIORITY, help="0-3 or P0-P3 (server default 2).")
@click.option("--type", "bead_type", type=click.Choice(BEAD_TYPES), help="Server default: task.")
@click.option("--tag", "tags", multiple=True, help="Repeatable.")
@click.option("--blocked-by", "blocked_by", type=ID, multiple=True, help="Blocking bead id (repeatable).")
@click.option("--acceptance", help="Shell command that must pass before the bead closes.")
@click.option("--owner", "owner_id", type=ID, help="User id of the person responsible (they are notified).")
@pass_session
def bead_create(session: Session, title: str, project_id: int, description: str | None, priority: int | None,
                bead_type: str | None, tags: tuple[str, ...], blocked_by: tuple[int, ...],
                acceptance: str | None, owner_id: int | None) -> None:
    """Create a bead."""
    body = given(project_id=project_id, title=title, description=description, priority=priority,
                 type=bead_type, tags=list(tags) or None, blocked_by=list(blocked_by) or None,
                 acceptance=acceptance, owner_id=owner_id)
    created = session.client().post("/beads", body)
    blockers = f" (blocked by {format_field(created.get('blocked_by'))})" if created.get("blocked_by") else ""
    say(session, created, f"Created bead {created['id']}: {created['title']}{blockers}")


@bead.command("show")
@click.argument("bead_id", metavar="ID", type=ID)
@pass_session
def bead_show(session: Session, bead_id: int) -> None:
    """Show one bead with its dependencies."""
    print_record(session, session.client().get(f"/beads/{bead_id}"), first=BEAD_FIRST)


@bead.command("assign")
@click.argument("bead_id", metavar="ID", type=ID)
@click.argument("owner_id", metavar="USER_ID", type=ID, required=False)
@click.option("--nobody", is_flag=True, help="Clear the owner.")
@pass_session
def bead_assign(session: Session, bead_id: int, owner_id: int | None, nobody: bool) -> None:
    """Make a person (user id) responsible for a bead; they get a notification."""
    if (owner_id is None) == (not nobody):
        raise click.UsageError("give a USER_ID, or --nobody to clear the owner")
    answer = session.client().request("PATCH", f"/beads/{bead_id}", body={"owner_id": owner_id})
    say(session, answer, f"Bead {bead_id} is owned by {'user ' + str(owner_id) if owner_id else 'nobody'}")


@bead.command("ready")
@click.option("--project", "project_id", type=ID, help="Only this project's beads.")
@paging
@pass_session
def bead_ready(session: Session, project_id: int | None, limit: int | None, offset: int | None) -> None:
    """Beads that are open with every blocker closed."""
    page = session.client().get("/beads/ready", project_id=project_id, limit=limit, offset=offset)
    print_page(session, page, BEAD_COLUMNS, "ready beads")


@bead.command("claim")
@click.argument("bead_id", metavar="ID", type=ID)
@click.option("--agent", "agent_id", type=ID, required=True, help="The idle agent that takes the bead.")
@pass_session
def bead_claim(session: Session, bead_id: int, agent_id: int) -> None:
    """Claim a ready bead for an idle agent (fails if someone else got it first)."""
    claimed = session.client().post(f"/beads/{bead_id}/claim", {"agent_id": agent_id})
    say(session, claimed, f"Bead {bead_id} claimed by agent {agent_id} "
                          f"(lease until {format_time(claimed.get('lease_expires_at'))})")


@bead.command("unblock")
@click.argument("bead_id", metavar="ID", type=ID)
@click.option("--reason")
@pass_session
def bead_unblock(session: Session, bead_id: int, reason: str | None) -> None:
    """Move a blocked bead back to open."""
    answer = session.client().post(f"/beads/{bead_id}/unblock", given(reason=reason))
    say(session, answer, f"Bead {bead_id} unblocked (now {answer.get('status')})")


@bead.command("close")
@click.argument("bead_id", metavar="ID", type=ID)
@click.option("--reason")
@pass_session
def bead_close(session: Session, bead_id: int, reason: str | None) -> None:
    """Close a bead; beads it blocked may become ready."""
    answer = session.client().post(f"/beads/{bead_id}/close", given(reason=reason))
    freed = f" (it was blocking {format_field(answer['blocks'])})" if answer.get("blocks") else ""
    say(session, answer, f"Bead {bead_id} closed{freed}")


@bead.group("dep")
def bead_dep() -> None:
    """Blocking dependencies between beads."""


@bead_dep.command("add")
@click.argument("bead_id", metavar="ID", type=ID)
@click.argument("blocker_id", metavar="BLOCKER_ID", type=ID)
@pass_session
def bead_dep_add(session: Session, bead_id: int, blocker_id: int) -> None:
    """Make bead ID wait for BLOCKER_ID to close."""
    answer = session.client().post(f"/beads/{bead_id}/dependencies", {"blocked_by": blocker_id})
    say(session, answer, f"Bead {bead_id} is now blocked by {format_field(answer.get('blocked_by'))}")


@bead_dep.command("rm")
@click.argument("bead_id", metavar="ID", type=ID)
@click.argument("blocker_id", metavar="BLOCKER_ID", type=ID)
@pass_session
def bead_dep_rm(session: Session, bead_id: int, blocker_id: int) -> None:
    """Stop bead ID waiting for BLOCKER_ID."""
    answer = session.client().delete(f"/beads/{bead_id}/dependencies/{blocker_id}")
    rest = answer.get("blocked_by") if answer else None
    say(session, answer, f"Bead {bead_id} no longer blocked by {blocker_id}"
                         + (f" (still blocked by {format_field(rest)})" if rest else ""))
