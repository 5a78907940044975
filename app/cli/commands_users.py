"""`loom user ...` and `loom apikey ...`: accounts and their roles, and scoped API keys for scripts."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from app.cli.client import Client, CliError, Session, pass_session
from app.cli.group import cli
from app.cli.options import ID, given, paging
from app.cli.output import Column, emit_json, format_field, format_time, print_page, say

USER_ROLES = ("admin", "user", "viewer", "service")
USERS_PAGE = 500  # the API's largest page
ALL_PERMISSIONS = "all of the user's"

USER_COLUMNS: list[Column] = [
    ("ID", lambda u: u.get("id")),
    ("USERNAME", lambda u: u.get("username")),
    ("ROLE", lambda u: u.get("role")),
    ("ACTIVE", lambda u: format_field(u.get("is_active"))),
    ("LAST LOGIN", lambda u: format_time(u.get("last_login_at"))),
]
APIKEY_COLUMNS: list[Column] = [
    ("ID", lambda k: k.get("id")),
    ("NAME", lambda k: k.get("name")),
    ("PREFIX", lambda k: k.get("prefix")),
    ("USER", lambda k: k.get("user") or k.get("username") or k.get("user_id")),
    ("PERMISSIONS", lambda k: ",".join(k.get("permissions") or []) or ALL_PERMISSIONS),
    ("EXPIRES", lambda k: format_time(k.get("expires_at"))),
    ("LAST USED", lambda k: format_time(k.get("last_used_at"))),
    ("REVOKED", lambda k: format_time(k["revoked_at"]) if k.get("revoked_at") else "no"),
]


class DurationType(click.ParamType):
    """A positive length of time written as a number and a unit: 90s, 90m, 12h, 30d or 2w."""

    name = "DURATION"
    UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = self.PATTERN.match(str(value))
        if not match or int(match.group(1)) == 0:
            self.fail(f"{value!r} is not a duration: use a number and s, m, h, d or w (e.g. 30d, 12h, 90m)",
                      param, ctx)
        return timedelta(**{self.UNITS[match.group(2).lower()]: int(match.group(1))})


class TimestampType(click.ParamType):
    """An ISO 8601 date or date-time; without a time zone it is taken as UTC."""

    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not an ISO 8601 time, e.g. 2030-01-31T12:00:00Z", param, ctx)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """A UTC time the way the API writes them: 2030-01-31T12:00:00Z."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def expiry(expires_in: timedelta | None, expires_at: datetime | None, now: datetime) -> str | None:
    """The key's `expires_at` from at most one of --expires-in (relative to `now`) and --expires-at."""
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        return iso_utc(now + expires_in)
    return iso_utc(expires_at) if expires_at is not None else None


def resolve_user_id(client: Client, user: str) -> int:
    """USER as written on the command line: digits are an id, anything else a username looked up in /users."""
    if user.isdigit():
        return int(user)
    offset = 0
    while True:
        page = client.get("/users", limit=USERS_PAGE, offset=offset)
        items = page.get("items", [])
        for candidate in items:
            if str(candidate.get("username", "")).casefold() == user.casefold():
                return int(candidate["id"])
        offset += len(items)
        if not items or offset >= int(page.get("total", 0)):
            raise CliError(f"no user named {user}")


def update_user(session: Session, user: str, changes: dict) -> dict:
    client = session.client()
    return client.request("PATCH", f"/users/{resolve_user_id(client, user)}", body=changes)


# --------------------------------------------------------------------------- users

@cli.group()
def user() -> None:
    """Users: accounts, their roles (admin, user, viewer, service) and whether they may log in."""


@user.command("list")
@paging
@pass_session
def user_list(session: Session, limit: int | None, offset: int | None) -> None:
    """List users."""
    print_page(session, session.client().get("/users", limit=limit, offset=offset), USER_COLUMNS, "users")


@user.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(USER_ROLES), help="What the user may do (server default: user).")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 8 characters (prompted twice, hidden, when missing).")
@pass_session
def user_create(session: Session, username: str, role: str | None, password: str) -> None:
    """Create a user."""
    created = session.client().post("/users", given(username=username, password=password, role=role))
    say(session, created, f"Created user {created['id']}: {created['username']} ({created['role']})")


@user.command("set-role")
@click.argument("user_ref", metavar="USER")
@click.argument("role", type=click.Choice(USER_ROLES))
@pass_session
def user_set_role(session: Session, user_ref: str, role: str) -> None:
    """Change a user's role (USER is an id or a username)."""
    updated = update_user(session, user_ref, {"role": role})
    say(session, updated, f"User {updated['id']} ({updated['username']}) is now {updated['role']}")


@user.command("disable")
@click.argument("user_ref", metavar="USER")
@pass_session
def user_disable(session: Session, user_ref: str) -> None:
    """Stop a user logging in and invalidate their sessions and tokens (USER is an id or a username)."""
    updated = update_user(session, user_ref, {"is_active": False})
    say(session, updated, f"Disabled user {updated['id']} ({updated['username']})")


@user.command("enable")
@click.argument("user_ref", metavar="USER")
@pass_session
def user_enable(session: Session, user_ref: str) -> None:
    """Let a disabled user log in again (USER is an id or a username)."""
    updated = update_user(session, user_ref, {"is_active": True})
    say(session, updated, f"Enabled user {updated['id']} ({updated['username']})")


# --------------------------------------------------------------------------- API keys

@cli.group()
def apikey() -> None:
    """API keys: long-lived credentials for scripts, optionally limited to some permissions."""


@apikey.command("list")
@click.option("--all", "all_users", is_flag=True, help="Every user's keys (admins only).")
@paging
@pass_session
def apikey_list(session: Session, all_users: bool, limit: int | None, offset: int | None) -> None:
    """List API keys (their prefixes; a key itself is shown only when it is created)."""
    answer = session.client().get("/auth/api-keys", all="true" if all_users else None, limit=limit, offset=offset)
    if session.json:
        emit_json(answer)
        return
    page = {"items": answer, "total": len(answer)} if isinstance(answer, list) else answer
    print_page(session, page, APIKEY_COLUMNS, "API keys")


@apikey.command("create")
@click.argument("name")
@click.option("--permission", "permissions", multiple=True,
              help="Limit the key to this permission, e.g. beads:read (repeatable; default: all of yours).")
@click.option("--expires-in", type=DurationType(), help="Lifetime such as 30d, 12h or 90m.")
@click.option("--expires-at", type=TimestampType(), help="Expiry as ISO 8601, e.g. 2030-01-31T12:00:00Z.")
@pass_session
def apikey_create(session: Session, name: str, permissions: tuple[str, ...], expires_in: timedelta | None,
                  expires_at: datetime | None) -> None:
    """Create an API key for yourself; the key is printed once and never again."""
    body = given(name=name, permissions=list(permissions) or None,
                 expires_at=expiry(expires_in, expires_at, datetime.now(UTC)))
    created = session.client().post("/auth/api-keys", body)
    if session.json:
        emit_json(created)
        return
    scope = ",".join(created.get("permissions") or []) or ALL_PERMISSIONS
    click.echo(f"Created API key {created['id']}: {created['name']} (prefix {created.get('prefix')}, "
               f"permissions {scope}, expires {format_time(created.get('expires_at'))})")
    click.echo("")
    click.echo(f"    {created['key']}")
    click.echo("")
    click.echo("This key is shown only once; store it now.")


@apikey.command("revoke")
@click.argument("key_id", metavar="ID", type=ID)
@pass_session
def apikey_revoke(session: Session, key_id: int) -> None:
    """Revoke an API key: it stops working at once."""
    session.client().delete(f"/auth/api-keys/{key_id}")
    say(session, {"id": key_id, "revoked": True}, f"Revoked key {key_id}")
