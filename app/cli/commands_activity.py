"""`loom activity` (the team's feed) and `loom notifications ...` (your inbox, preferences and webhooks)."""
from __future__ import annotations

import re

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import ID, given, paging
from app.cli.output import Column, format_time, print_page, print_record, say, truncate

ACTIVITY_TYPES = ("bead.created", "bead.claimed", "bead.closed", "bead.blocked", "bead.commented", "bead.deleted",
                  "test.failed", "motivation.fired", "budget.exhausted", "provider.health", "pair.paused",
                  "pair.resumed")
NOTIFICATION_TYPES = ("bead.assigned", "decision.waiting", "bead.p0_created", "provider.down", "budget.exhausted",
                      "bead.auto_blocked")
ACTIVITY_COLUMNS: list[Column] = [
    ("WHEN", lambda a: format_time(a.get("last_at"))),
    ("TYPE", lambda a: a.get("type")),
    ("ACTOR", lambda a: truncate(a.get("actor"), 24)),
    ("N", lambda a: a.get("count")),
    ("PROJECT", lambda a: a.get("project_id")),
    ("SUMMARY", lambda a: truncate(a.get("summary"), 70)),
]
NOTIFICATION_COLUMNS: list[Column] = [
    ("ID", lambda n: n.get("id")),
    ("", lambda n: "" if n.get("read") else "*"),
    ("WHEN", lambda n: format_time(n.get("created_at"))),
    ("TYPE", lambda n: n.get("type")),
    ("TITLE", lambda n: truncate(n.get("title"), 60)),
    ("LINK", lambda n: n.get("link")),
]
DELIVERY_COLUMNS: list[Column] = [
    ("ID", lambda d: d.get("id")),
    ("NOTIFICATION", lambda d: d.get("notification_id")),
    ("STATUS", lambda d: d.get("status")),
    ("ATTEMPTS", lambda d: d.get("attempts")),
    ("LAST", lambda d: d.get("last_status") or truncate(d.get("last_error"), 40)),
    ("NEXT", lambda d: format_time(d.get("next_attempt_at"))),
]
QUIET = re.compile(r"^\s*(\d\d:\d\d)\s*-\s*(\d\d:\d\d)\s*$")


@cli.command("activity")
@click.option("--project", "project_id", type=ID, help="Only this project.")
@click.option("--type", "kind", type=click.Choice(ACTIVITY_TYPES), help="Only this kind of line.")
@click.option("--actor", help="Only this person, agent or motivation:<name>.")
@click.option("--since", help="ISO 8601 time or a span back from now: 15m, 24h, 7d.")
@paging
@pass_session
def activity(session: Session, project_id: int | None, kind: str | None, actor: str | None, since: str | None,
             limit: int | None, offset: int | None) -> None:
    """The team's activity feed, newest first (repeats within 5 minutes are one line with a count)."""
    page = session.client().get("/activity", project_id=project_id, type=kind, actor=actor, since=since,
                                limit=limit, offset=offset)
    print_page(session, page, ACTIVITY_COLUMNS, "activity lines")


@cli.group()
def notifications() -> None:
    """Your notifications: list, mark read, preferences and webhook deliveries."""


@notifications.command("list")
@click.option("--unread", "unread", flag_value="true", default=None, help="Only unread ones.")
@click.option("--read", "unread", flag_value="false", help="Only read ones.")
@click.option("--type", "kind", type=click.Choice(NOTIFICATION_TYPES))
@paging
@pass_session
def notifications_list(session: Session, unread: str | None, kind: str | None, limit: int | None,
                       offset: int | None) -> None:
    """List your notifications (newest first; * marks unread)."""
    page = session.client().get("/notifications", unread=unread, type=kind, limit=limit, offset=offset)
    print_page(session, page, NOTIFICATION_COLUMNS, "notifications")
    if not session.json:
        click.echo(f"{page['unread']} unread")


@notifications.command("read")
@click.argument("notification_id", metavar="ID", type=ID)
@pass_session
def notifications_read(session: Session, notification_id: int) -> None:
    """Mark one notification read."""
    answer = session.client().post(f"/notifications/{notification_id}/read")
    say(session, answer, f"Notification {notification_id} marked read")


@notifications.command("read-all")
@pass_session
def notifications_read_all(session: Session) -> None:
    """Mark all your notifications read."""
    answer = session.client().post("/notifications/read-all")
    say(session, answer, f"Marked {answer['marked']} notification(s) read")


@notifications.command("prefs")
@click.option("--type", "types", type=click.Choice(NOTIFICATION_TYPES), multiple=True,
              help="Only these types (repeatable).")
@click.option("--all-types", is_flag=True, help="Every type (undoes --type).")
@click.option("--min-priority", type=click.IntRange(0, 3), help="Bead notifications for P0..P<n> only.")
@click.option("--quiet", help='Quiet hours in UTC, "22:00-07:00" (webhooks wait); "off" to clear.')
@click.option("--webhook-url", help='Where to POST signed notifications; "off" to clear.')
@click.option("--webhook-secret", help="The HMAC secret (16+ characters); generated when a URL has none.")
@click.option("--webhook/--no-webhook", "webhook_enabled", default=None, help="Send webhooks or not.")
@pass_session
def notifications_prefs(session: Session, types: tuple[str, ...], all_types: bool, min_priority: int | None,
                        quiet: str | None, webhook_url: str | None, webhook_secret: str | None,
                        webhook_enabled: bool | None) -> None:
    """Show your preferences, or change the ones given."""
    if types and all_types:
        raise click.UsageError("--type and --all-types contradict each other")
    body = given(types=list(types) or None, min_priority=min_priority, webhook_secret=webhook_secret,
                 webhook_enabled=webhook_enabled)
    if all_types:
        body["types"] = None
    if quiet is not None:
        if quiet.strip().lower() == "off":
            body.update(quiet_start=None, quiet_end=None)
        else:
            match = QUIET.match(quiet)
            if not match:
                raise click.BadParameter('use HH:MM-HH:MM, e.g. "22:00-07:00", or "off"', param_hint="--quiet")
            body.update(quiet_start=match.group(1), quiet_end=match.group(2))
    if webhook_url is not None:
        body["webhook_url"] = None if webhook_url.strip().lower() == "off" else webhook_url
    client = session.client()
    prefs = client.request("PUT", "/notifications/preferences", body=body) if body else \
        client.get("/notifications/preferences")
    if session.json:
        say(session, prefs, "")
        return
    print_record(session, {k: v for k, v in prefs.items() if k != "known_types"},
                 first=("types", "min_priority", "quiet_start", "quiet_end", "webhook_url", "webhook_enabled"))
    if prefs.get("webhook_secret"):
        click.echo("Save this webhook secret now; it is not shown again. Check X-Loom-Signature with it.")


@notifications.command("deliveries")
@paging
@pass_session
def notifications_deliveries(session: Session, limit: int | None, offset: int | None) -> None:
    """Your webhook deliveries: status, attempts, last answer, next retry."""
    page = session.client().get("/notifications/webhook-deliveries", limit=limit, offset=offset)
    print_page(session, page, DELIVERY_COLUMNS, "deliveries")
