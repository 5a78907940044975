"""`loom analytics ...`: LLM usage totals and breakdowns, the request log, CSV/JSON export, the price table."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import click
import httpx

from app.cli.client import NOT_LOGGED_IN, TIMEOUT_SECONDS, CliError, Session, _error_message, pass_session
from app.cli.group import cli
from app.cli.options import ID, paging
from app.cli.output import Column, emit_json, format_time, print_page, print_table, say

GROUPS = ("project", "agent", "persona", "model")


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def _usd(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "-"


REQUEST_COLUMNS: list[Column] = [
    ("ID", lambda r: r.get("id")),
    ("TIME", lambda r: format_time(r.get("ts"))),
    ("PROJECT", lambda r: r.get("project_id")),
    ("BEAD", lambda r: r.get("bead_id")),
    ("PERSONA", lambda r: r.get("persona")),
    ("MODEL", lambda r: r.get("model")),
    ("STATUS", lambda r: r.get("status")),
    ("TOKENS", lambda r: r.get("prompt_tokens", 0) + r.get("completion_tokens", 0)),
    ("COST", lambda r: _usd(r.get("cost_usd"))),
    ("LATENCY", lambda r: _ms(r.get("latency_ms"))),
]
PRICE_COLUMNS: list[Column] = [
    ("PATTERN", lambda p: p.get("pattern")),
    ("PROMPT $/MTOK", lambda p: p.get("prompt_usd_per_mtok")),
    ("COMPLETION $/MTOK", lambda p: p.get("completion_usd_per_mtok")),
    ("UPDATED BY", lambda p: p.get("updated_by")),
]


def filter_options(command: Callable) -> Callable:
    """--project, --bead, --agent, --persona, --model, --status, --since, --until."""
    for name, kind, text in reversed([
            ("--project", ID, "Only this project's requests."), ("--bead", ID, "Only this bead's."),
            ("--agent", ID, "Only this agent's."), ("--persona", str, "Only this persona's."),
            ("--model", str, "Only this model's."), ("--status", str, "ok, budget, or an error kind (auth, ...)."),
            ("--since", str, "From this time: ISO 8601 (UTC unless a zone is given) or a span: 15m, 24h, 7d."),
            ("--until", str, "Before this time (same forms).")]):
        command = click.option(name, type=kind, default=None, help=text)(command)
    return command


def _params(**options: Any) -> dict:
    """Query parameters from the options; filters given before the subcommand (`loom analytics --project 3
    requests`) count too."""
    parent = click.get_current_context().find_root().command.commands.get("analytics")
    outer = click.get_current_context().parent
    if outer is not None and outer.command is parent:
        options = {**{k: v for k, v in outer.params.items() if k in options},
                   **{k: v for k, v in options.items() if v is not None}}
    names = {"project": "project_id", "bead": "bead_id", "agent": "agent_id"}
    return {names.get(key, key): value for key, value in options.items() if value is not None}


def print_summary(session: Session, answer: dict) -> None:
    if session.json:
        emit_json(answer)
        return
    t = answer["totals"]
    click.echo(f"requests: {t['requests']} (ok {t['ok']}, errors {t['errors']}, budget refusals "
               f"{t['budget_refusals']}, error rate {t['error_rate']:.1%})")
    click.echo(f"tokens: {t['tokens']} (prompt {t['prompt_tokens']}, completion {t['completion_tokens']})")
    click.echo(f"cost: {_usd(t['cost_usd'])}")
    click.echo(f"latency: p50 {_ms(t['latency_p50_ms'])}, p95 {_ms(t['latency_p95_ms'])}")
    if answer.get("unpriced_models"):
        click.echo(f"no price (counted as $0): {', '.join(answer['unpriced_models'])}")
    if answer.get("group_by"):
        click.echo("")
        rows = [[str(g["label"] if g["label"] is not None else "-"), str(g["requests"]), str(g["tokens"]),
                 _usd(g["cost_usd"]), str(g["errors"]), _ms(g["latency_p50_ms"]), _ms(g["latency_p95_ms"])]
                for g in answer["groups"]]
        print_table([answer["group_by"].upper(), "REQUESTS", "TOKENS", "COST", "ERRORS", "P50", "P95"], rows)


def _summary(session: Session, options: dict) -> None:
    print_summary(session, session.client().get("/analytics/summary", **_params(**options)))


@cli.group("analytics", invoke_without_command=True)
@filter_options
@click.option("--group-by", type=click.Choice(GROUPS), help="A breakdown by project, agent, persona or model.")
@click.pass_context
def analytics(ctx: click.Context, **options: Any) -> None:
    """LLM usage: requests, tokens, cost, errors and latency (alone: the summary)."""
    if ctx.invoked_subcommand is None:
        _summary(ctx.find_object(Session), options)


@analytics.command("summary")
@filter_options
@click.option("--group-by", type=click.Choice(GROUPS), help="A breakdown by project, agent, persona or model.")
@pass_session
def analytics_summary(session: Session, **options: Any) -> None:
    """Totals (and a breakdown with --group-by) of the matching requests."""
    _summary(session, options)


@analytics.command("requests")
@filter_options
@paging
@pass_session
def analytics_requests(session: Session, limit: int | None, offset: int | None, **options: Any) -> None:
    """Recorded LLM requests, newest first."""
    page = session.client().get("/analytics/requests", limit=limit, offset=offset, **_params(**options))
    print_page(session, page, REQUEST_COLUMNS, "requests")


@analytics.command("export")
@filter_options
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to this file (default: stdout).")
@pass_session
def analytics_export(session: Session, fmt: str, out: str | None, **options: Any) -> None:
    """Every matching request as CSV or a JSON array (oldest first)."""
    token = session.token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{session.server}/api/v1/analytics/export"
    written = 0
    try:
        with httpx.stream("GET", url, params={"format": fmt, **_params(**options)}, headers=headers,
                          timeout=TIMEOUT_SECONDS) as response:
            if response.status_code == 401:
                raise CliError(NOT_LOGGED_IN)
            if response.status_code >= 400:
                response.read()
                raise CliError(_error_message(response))
            sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115 (closed below)
            try:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    written += len(chunk)
            finally:
                if out:
                    sink.close()
                else:
                    sink.flush()
    except httpx.TransportError as exc:
        raise CliError(f"cannot reach Loom at {session.server}: {exc}") from None
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    if out:
        click.echo(f"Wrote {written} bytes to {out}", err=True)


@analytics.command("prices")
@paging
@pass_session
def analytics_prices(session: Session, limit: int | None, offset: int | None) -> None:
    """The price table (USD per million tokens; `prefix*` patterns, longest match wins)."""
    print_page(session, session.client().get("/analytics/prices", limit=limit, offset=offset), PRICE_COLUMNS,
               "prices")


@analytics.command("set-price")
@click.argument("pattern")
@click.option("--prompt", "prompt", type=click.FloatRange(0), required=True, help="USD per million prompt tokens.")
@click.option("--completion", type=click.FloatRange(0), required=True, help="USD per million completion tokens.")
@pass_session
def analytics_set_price(session: Session, pattern: str, prompt: float, completion: float) -> None:
    """Set the price of a model name or `prefix*` pattern (admin)."""
    answer = session.client().request("PUT", f"/analytics/prices/{quote(pattern, safe='/')}",
                                      body={"prompt_usd_per_mtok": prompt, "completion_usd_per_mtok": completion})
    say(session, answer, f"Price of {answer['pattern']}: ${prompt}/Mtok prompt, ${completion}/Mtok completion")


@analytics.command("rm-price")
@click.argument("pattern")
@pass_session
def analytics_rm_price(session: Session, pattern: str) -> None:
    """Remove a price (its models then cost $0 and are flagged unpriced; admin)."""
    session.client().delete(f"/analytics/prices/{quote(pattern, safe='/')}")
    say(session, {"pattern": pattern, "deleted": True}, f"Removed the price of {pattern}")
