"""`loom motivation ...`: proactive triggers (interval, calendar, event, idle, threshold) and their history."""
from __future__ import annotations

import re
from typing import Any

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import ID, PRIORITY, given, paging
from app.cli.output import Column, format_time, print_page, print_record, say, truncate

KINDS = ("interval", "calendar", "event", "idle", "threshold")
METRICS = ("cost_usd_today", "cost_usd_total", "open_beads", "blocked_beads", "error_rate_1h")
OUTCOMES = ("pending", "fired", "skipped", "failed")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

MOTIVATION_COLUMNS: list[Column] = [
    ("ID", lambda m: m.get("id")),
    ("NAME", lambda m: truncate(m.get("name"), 40)),
    ("KIND", lambda m: m.get("kind")),
    ("TRIGGER", lambda m: truncate(m.get("trigger"), 40)),
    ("PERSONA", lambda m: m.get("persona")),
    ("PROJECT", lambda m: m.get("project_id") or "all"),
    ("ON", lambda m: "yes" if m.get("enabled") else "no"),
    ("LAST FIRED", lambda m: format_time(m.get("last_fired_at"))),
    ("FIRED", lambda m: m.get("fire_count")),
]
FIRING_COLUMNS: list[Column] = [
    ("ID", lambda f: f.get("id")),
    ("WHEN", lambda f: format_time(f.get("fired_at"))),
    ("MOTIVATION", lambda f: truncate(f.get("motivation_name"), 40)),
    ("OUTCOME", lambda f: f.get("outcome")),
    ("PROJECT", lambda f: f.get("project_id")),
    ("BEAD", lambda f: f.get("bead_id")),
    ("DETAIL", lambda f: truncate(f.get("detail"), 50)),
]


class DurationType(click.ParamType):
    """Seconds, written 90, 90s, 5m, 2h or 1d."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", str(value).lower())
        if not match:
            self.fail(f"{value!r} is not a duration: use seconds or 30s, 5m, 2h, 1d", param, ctx)
        return int(match.group(1)) * UNITS[match.group(2) or "s"]


DURATION = DurationType()


@cli.group()
def motivation() -> None:
    """Motivations: triggers that make agents start work on their own."""


@motivation.command("list")
@click.option("--project", "project_id", type=ID, help="Only motivations for this project.")
@click.option("--kind", type=click.Choice(KINDS))
@click.option("--enabled/--disabled", "enabled", default=None, help="Only enabled (or disabled) ones.")
@paging
@pass_session
def motivation_list(session: Session, project_id: int | None, kind: str | None, enabled: bool | None,
                    limit: int | None, offset: int | None) -> None:
    """List motivations."""
    flag = None if enabled is None else str(enabled).lower()
    page = session.client().get("/motivations", project_id=project_id, kind=kind, enabled=flag, limit=limit,
                                offset=offset)
    print_page(session, page, MOTIVATION_COLUMNS, "motivations")


@motivation.command("show")
@click.argument("motivation_id", metavar="ID", type=ID)
@pass_session
def motivation_show(session: Session, motivation_id: int) -> None:
    """Show one motivation."""
    print_record(session, session.client().get(f"/motivations/{motivation_id}"),
                 first=("id", "name", "kind", "trigger", "enabled", "persona", "project_id", "bead_template"))


@motivation.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--event", help="kind=event: bead.closed, test.failed, bead.blocked, ...")
@click.option("--interval", "interval_s", type=DURATION, help="kind=interval: how often (90, 5m, 2h, 1d).")
@click.option("--cron", help='kind=calendar: five fields in UTC, e.g. "0 9 * * 1-5".')
@click.option("--idle-minutes", type=click.IntRange(1), help="kind=idle: minutes without activity.")
@click.option("--metric", type=click.Choice(METRICS), help="kind=threshold: what to measure.")
@click.option("--op", type=click.Choice([">", ">=", "<", "<="]), default=">", show_default=True)
@click.option("--value", type=float, help="kind=threshold: the line to cross.")
@click.option("--cooldown", "cooldown_s", type=DURATION, help="At least this long between firings per project.")
@click.option("--project", "project_id", type=ID, help="Only this project (default: every project).")
@click.option("--persona", help="Who the bead is for and whose agent wakes.")
@click.option("--title", help="Title of the bead to create ({bead_id} {title} {project} {date} ...).")
@click.option("--description", help="Description of the bead to create.")
@click.option("--priority", type=PRIORITY, help="Priority of the bead to create (0-3 or P0-P3).")
@click.option("--type", "bead_type", type=click.Choice(["task", "bug", "feature", "epic"]))
@click.option("--wake/--no-wake", default=False, help="Also wake an agent of the persona.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
@pass_session
def motivation_create(session: Session, name: str, kind: str, event: str | None, interval_s: int | None,
                      cron: str | None, idle_minutes: int | None, metric: str | None, op: str, value: float | None,
                      cooldown_s: int | None, project_id: int | None, persona: str | None, title: str | None,
                      description: str | None, priority: int | None, bead_type: str | None, wake: bool,
                      disabled: bool) -> None:
    """Create a motivation."""
    if kind == "threshold" and (metric is None or value is None):
        raise click.UsageError("a threshold motivation needs --metric and --value")
    if title is None and (description is not None or priority is not None or bead_type is not None):
        raise click.UsageError("--description, --priority and --type describe the bead: give its --title too")
    body = given(name=name, kind=kind, event=event, interval_s=interval_s, cron=cron, idle_minutes=idle_minutes,
                 cooldown_s=cooldown_s, project_id=project_id, persona=persona)
    if kind == "threshold":
        body["threshold"] = {"metric": metric, "op": op, "value": value}
    if title is not None:
        body["bead_template"] = given(title=title, description=description, priority=priority, type=bead_type)
    body.update(wake_agent=wake, enabled=not disabled)
    created = session.client().post("/motivations", body)
    state = "enabled" if created["enabled"] else "disabled"
    say(session, created, f"Created motivation {created['id']}: {created['name']} ({created['trigger']}, {state})")


def _set_enabled(session: Session, motivation_id: int, enabled: bool) -> None:
    answer = session.client().request("PATCH", f"/motivations/{motivation_id}", body={"enabled": enabled})
    say(session, answer, f"Motivation {motivation_id} ({answer['name']}) is {'enabled' if enabled else 'disabled'}")


@motivation.command("enable")
@click.argument("motivation_id", metavar="ID", type=ID)
@pass_session
def motivation_enable(session: Session, motivation_id: int) -> None:
    """Switch a motivation on."""
    _set_enabled(session, motivation_id, True)


@motivation.command("disable")
@click.argument("motivation_id", metavar="ID", type=ID)
@pass_session
def motivation_disable(session: Session, motivation_id: int) -> None:
    """Switch a motivation off."""
    _set_enabled(session, motivation_id, False)


@motivation.command("delete")
@click.argument("motivation_id", metavar="ID", type=ID)
@pass_session
def motivation_delete(session: Session, motivation_id: int) -> None:
    """Delete a motivation (built-in ones can only be disabled)."""
    session.client().delete(f"/motivations/{motivation_id}")
    say(session, {"deleted": motivation_id}, f"Deleted motivation {motivation_id}")


@motivation.command("trigger")
@click.argument("motivation_id", metavar="ID", type=ID)
@click.option("--project", "project_id", type=ID, help="The project to fire in (for one that serves every project).")
@click.option("--bead", "bead_id", type=ID, help="The bead it is about (fills {bead_id} and {title}).")
@pass_session
def motivation_trigger(session: Session, motivation_id: int, project_id: int | None, bead_id: int | None) -> None:
    """Fire a motivation now (its cooldown does not apply)."""
    firing = session.client().post(f"/motivations/{motivation_id}/trigger",
                                   given(project_id=project_id, bead_id=bead_id))
    made = f", created bead {firing['bead_id']}" if firing.get("bead_id") else ""
    detail = f" ({firing['detail']})" if firing.get("detail") else ""
    say(session, firing, f"Fired {firing['motivation_name']}: firing {firing['id']} {firing['outcome']}{made}{detail}")


@motivation.command("history")
@click.option("--motivation", "motivation_id", type=ID, help="Only this motivation's firings.")
@click.option("--project", "project_id", type=ID, help="Only firings in this project.")
@click.option("--outcome", type=click.Choice(OUTCOMES))
@paging
@pass_session
def motivation_history(session: Session, motivation_id: int | None, project_id: int | None, outcome: str | None,
                       limit: int | None, offset: int | None) -> None:
    """Firings, newest first."""
    page = session.client().get("/motivations/history", motivation_id=motivation_id, project_id=project_id,
                                outcome=outcome, limit=limit, offset=offset)
    print_page(session, page, FIRING_COLUMNS, "firings")
