"""`loom budget ...`: show and set the token and cost limits of a project (or of one bead)."""
from __future__ import annotations

from typing import Any

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import ID
from app.cli.output import print_record

CLEAR = ("none", "null", "off", "unlimited")
BUDGET_FIRST = ("scope", "daily_usd", "total_usd", "daily_tokens", "total_tokens", "exhausted", "spent_usd",
                "spent_tokens", "day", "day_usd", "day_tokens", "reserved_usd", "reserved_tokens")


class LimitType(click.ParamType):
    """A limit: a non-negative number, or `none` to remove the limit."""

    def __init__(self, kind: type) -> None:
        self.kind = kind
        self.name = "AMOUNT|none" if kind is float else "TOKENS|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.strip().lower() in CLEAR:
            return CLEAR[0]
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a {'number' if self.kind is float else 'whole number'} (or none)", param,
                      ctx)
        if number < 0:
            self.fail(f"{value!r} is negative: limits are 0 or more (none removes a limit)", param, ctx)
        return number


def _path(project_id: int | None, bead_id: int | None) -> str:
    if (project_id is None) == (bead_id is None):
        raise click.UsageError("give a PROJECT id or --bead ID (one of them)")
    return f"/beads/{bead_id}/budget" if bead_id is not None else f"/projects/{project_id}/budget"


@cli.group()
def budget() -> None:
    """Budgets: daily and total token and cost limits, checked before every LLM call."""


@budget.command("show")
@click.argument("project_id", metavar="[PROJECT]", type=ID, required=False)
@click.option("--bead", "bead_id", type=ID, help="A bead's own budget instead of a project's.")
@pass_session
def budget_show(session: Session, project_id: int | None, bead_id: int | None) -> None:
    """Show the limits, what was spent (in total and today, UTC) and what is reserved by calls in flight."""
    print_record(session, session.client().get(_path(project_id, bead_id)), first=BUDGET_FIRST)


@budget.command("set")
@click.argument("project_id", metavar="[PROJECT]", type=ID, required=False)
@click.option("--bead", "bead_id", type=ID, help="Set a bead's own budget instead of a project's.")
@click.option("--daily-usd", type=LimitType(float), help="USD per UTC day (none: no limit).")
@click.option("--total-usd", type=LimitType(float), help="USD in all (none: no limit).")
@click.option("--daily-tokens", type=LimitType(int), help="Tokens per UTC day (none: no limit).")
@click.option("--total-tokens", type=LimitType(int), help="Tokens in all (none: no limit).")
@pass_session
def budget_set(session: Session, project_id: int | None, bead_id: int | None, **limits: Any) -> None:
    """Set limits; the ones not given stay as they are. A blocked bead runs again after `loom bead unblock`."""
    path = _path(project_id, bead_id)
    body = {name: (None if value == CLEAR[0] else value) for name, value in limits.items() if value is not None}
    if not body:
        raise click.UsageError("nothing to set: give --daily-usd, --total-usd, --daily-tokens or --total-tokens")
    print_record(session, session.client().request("PUT", path, body=body), first=BUDGET_FIRST)
