"""`loom login`, `loom logout` and `loom status`: credentials for a server and a summary of its state."""
from __future__ import annotations

from typing import Any

import click

from app.cli.client import Client, CliError, Session, load_credentials, pass_session, save_credentials
from app.cli.group import cli
from app.cli.options import AGENT_STATUSES, BEAD_STATUSES
from app.cli.output import emit_json, format_time, say


@cli.command()
@click.option("--username", prompt=True, help="Account name (prompted when missing).")
@click.option("--password", prompt=True, hide_input=True, help="Password (prompted, hidden, when missing).")
@pass_session
def login(session: Session, username: str, password: str) -> None:
    """Log in and save a bearer token for this server (mode 0600)."""
    client = session.client(authenticated=False)
    try:
        answer = client.request("POST", "/auth/login", body={"username": username, "password": password},
                                auth_hint=False)
    finally:
        client.close()
    servers = load_credentials(session.credentials)
    user = answer.get("user") or {}
    servers[session.server] = {"token": answer["token"], "expires_at": answer.get("expires_at"),
                               "username": user.get("username", username)}
    save_credentials(session.credentials, servers)
    say(session, answer, f"Logged in as {user.get('username', username)} "
                         f"(expires {format_time(answer.get('expires_at'))})")


@cli.command()
@pass_session
def logout(session: Session) -> None:
    """Forget the saved token for this server (and end the server session, best effort)."""
    servers = load_credentials(session.credentials)
    saved = servers.pop(session.server, None)
    if saved:
        try:
            session.client().request("POST", "/auth/logout", body={})
        except CliError:
            pass  # best effort: the local token is what matters
        save_credentials(session.credentials, servers)
    message = f"Logged out of {session.server}" if saved else f"Not logged in to {session.server}"
    say(session, {"server": session.server, "logged_out": bool(saved)}, message)


def _count(client: Client, path: str, **filters: Any) -> int:
    return int(client.get(path, limit=1, **filters).get("total", 0))


@cli.command()
@pass_session
def status(session: Session) -> None:
    """Server health and counts of projects, agents and beads."""
    client = session.client()
    health = client.request("GET", "/health/ready", api=False, accept=(503,)) or {}
    projects = _count(client, "/projects")
    agents = {s: _count(client, "/agents", status=s) for s in AGENT_STATUSES}
    beads = {s: _count(client, "/beads", status=s) for s in BEAD_STATUSES}
    summary = {"server": session.server, "health": health, "projects": projects,
               "agents": {"total": sum(agents.values()), "by_status": agents},
               "beads": {"total": sum(beads.values()), "by_status": beads}}
    if session.json:
        emit_json(summary)
        return
    checks = ", ".join(
        f"{name} {'ok' if check.get('ok') else 'FAILING'}"
        + (f" {check['latency_ms']} ms" if check.get("latency_ms") is not None else "")
        + (f" ({check['error']})" if check.get("error") else "")
        for name, check in (health.get("checks") or {}).items())
    def by(counts: dict) -> str:
        return ", ".join(f"{name} {n}" for name, n in counts.items())

    click.echo(f"Server:    {session.server}")
    ralph = health.get("ralph") or {}
    if health.get("status") == "degraded":  # ready, but Ralph (run by Beat) is not ticking: say why
        checks += ("; " if checks else "") + "ralph FAILING (" + (
            ralph.get("error") or f"last tick {ralph.get('age_s')} s ago") + ")"
    click.echo(f"Health:    {health.get('status', 'unknown')}" + (f" ({checks})" if checks else ""))
    click.echo(f"Projects:  {projects}")
    click.echo(f"Agents:    {summary['agents']['total']} ({by(agents)})")
    click.echo(f"Beads:     {summary['beads']['total']} ({by(beads)})")
