"""`loom project ...`: list, create and show projects."""
from __future__ import annotations

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import ID, given, paging
from app.cli.output import Column, print_page, print_record, say

PROJECT_FIRST = ("id", "name", "description", "git_repo", "default_branch", "git_strategy")
PROJECT_COLUMNS: list[Column] = [
    ("ID", lambda p: p.get("id")),
    ("NAME", lambda p: p.get("name")),
    ("STRATEGY", lambda p: p.get("git_strategy")),
    ("REPO", lambda p: p.get("git_repo") or "(local)"),
]


@cli.group()
def project() -> None:
    """Projects: a git repository a team of agents works on."""


@project.command("list")
@paging
@pass_session
def project_list(session: Session, limit: int | None, offset: int | None) -> None:
    """List projects."""
    print_page(session, session.client().get("/projects", limit=limit, offset=offset), PROJECT_COLUMNS, "projects")


@project.command("create")
@click.argument("name")
@click.option("--description", help="What the project is for.")
@click.option("--git-repo", help="Absolute path or git URL (default: a new local repository).")
@click.option("--default-branch", help="Branch agents start from (server default: main).")
@click.option("--git-strategy", type=click.Choice(["direct", "branch"]),
              help="Commit straight to the default branch, or one branch per bead (server default).")
@pass_session
def project_create(session: Session, name: str, description: str | None, git_repo: str | None,
                   default_branch: str | None, git_strategy: str | None) -> None:
    """Create a project (the server also creates its default team of agents)."""
    body = given(name=name, description=description, git_repo=git_repo, default_branch=default_branch,
                 git_strategy=git_strategy)
    created = session.client().post("/projects", body)
    say(session, created, f"Created project {created['id']}: {created['name']}")


@project.command("show")
@click.argument("project_id", metavar="ID", type=ID)
@pass_session
def project_show(session: Session, project_id: int) -> None:
    """Show one project."""
    print_record(session, session.client().get(f"/projects/{project_id}"), first=PROJECT_FIRST)
