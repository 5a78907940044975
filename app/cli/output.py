"""The CLI's printing: tables with a paging footer, `key: value` records, raw JSON and short sentences."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from app.cli.client import Session

TITLE_WIDTH = 60

Column = tuple[str, Callable[[dict], Any]]


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value).replace("\n", " ")


def truncate(text: Any, width: int = TITLE_WIDTH) -> str:
    text = _cell(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def print_page(session: Session, page: dict, columns: list[Column], noun: str) -> None:
    """A list answer {"items", "total"}: raw JSON, or a table with an "N of M shown" footer."""
    if session.json:
        emit_json(page)
        return
    items, total = page.get("items", []), page.get("total", 0)
    if not items:
        click.echo(f"No {noun} found." if not total else f"No {noun} on this page ({total} in all).")
        return
    print_table([name for name, _ in columns], [[_cell(get(item)) for _, get in columns] for item in items])
    if total > len(items):
        click.echo(f"{len(items)} of {total} shown")


def format_field(value: Any) -> str:
    """One value of a record as text: yes/no, lists joined by commas, dicts as JSON, "-" for empty."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False) if value else "-"
    return str(value)


def print_record(session: Session, record: dict, first: tuple[str, ...] = ()) -> None:
    """One object: raw JSON, or `key: value` lines (lists joined by commas), the `first` keys on top."""
    if session.json:
        emit_json(record)
        return
    keys = [key for key in first if key in record] + [key for key in record if key not in first]
    for key in keys:
        click.echo(f"{key}: {format_field(record[key])}")


def say(session: Session, answer: Any, message: str) -> None:
    """After an action: the server's JSON with -o json, else one human sentence."""
    if session.json:
        emit_json(answer)
    else:
        click.echo(message)


def format_time(value: str | None) -> str:
    if not value:
        return "never"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
