"""`loom provider ...`: register OpenAI-compatible LLM endpoints and check their health."""
from __future__ import annotations

import click

from app.cli.client import Session, pass_session
from app.cli.group import cli
from app.cli.options import ID, given, paging
from app.cli.output import Column, print_page, say

PROVIDER_COLUMNS: list[Column] = [
    ("ID", lambda p: p.get("id")),
    ("NAME", lambda p: p.get("name")),
    ("STATUS", lambda p: p.get("status")),
    ("LATENCY", lambda p: f"{p['latency_ms']:.0f} ms" if p.get("latency_ms") is not None else None),
    ("ENDPOINT", lambda p: p.get("endpoint")),
    ("MODEL", lambda p: p.get("model")),
]


@cli.group()
def provider() -> None:
    """Providers: OpenAI-compatible LLM endpoints."""


@provider.command("list")
@paging
@pass_session
def provider_list(session: Session, limit: int | None, offset: int | None) -> None:
    """List providers with their health."""
    page = session.client().get("/providers", limit=limit, offset=offset)
    print_page(session, page, PROVIDER_COLUMNS, "providers")


@provider.command("add")
@click.argument("name")
@click.option("--endpoint", required=True, help="Base URL, e.g. https://api.openai.com/v1")
@click.option("--model", help="Model name (default: the provider's first model).")
@click.option("--api-key", "provider_key", help="Bearer key for the provider (stored server-side, shown masked).")
@pass_session
def provider_add(session: Session, name: str, endpoint: str, model: str | None, provider_key: str | None) -> None:
    """Register a provider."""
    created = session.client().post("/providers", given(name=name, endpoint=endpoint, model=model,
                                                         api_key=provider_key))
    key = f", key {created['api_key']}" if created.get("api_key") else ""
    say(session, created, f"Added provider {created['id']}: {created['name']} ({created['endpoint']}{key})")


@provider.command("check")
@click.argument("provider_id", metavar="ID", type=ID)
@pass_session
def provider_check(session: Session, provider_id: int) -> None:
    """Check a provider now (GET {endpoint}/models) and record its health."""
    checked = session.client().post(f"/providers/{provider_id}/check")
    latency = f", {checked['latency_ms']:.0f} ms" if checked.get("latency_ms") is not None else ""
    error = f": {checked['last_error']}" if checked.get("last_error") else ""
    say(session, checked, f"Provider {provider_id} ({checked.get('name')}): {checked.get('status')}{latency}{error}")
