"""Shared option types and helpers for the CLI's commands: priorities, ids, paging and request bodies."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

BEAD_STATUSES = ("open", "in_progress", "blocked", "closed")
BEAD_TYPES = ("task", "bug", "feature", "epic", "decision")
AGENT_STATUSES = ("idle", "working", "paused", "complete")


class PriorityType(click.ParamType):
    """A bead priority written 0-3 or P0-P3."""

    name = "0-3"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            number = value
        else:
            text = str(value).strip().upper().removeprefix("P")
            number = int(text) if text.isdigit() else -1
        if number not in (0, 1, 2, 3):
            self.fail(f"{value!r} is not a priority: use 0-3 (or P0-P3; P0 is the highest)", param, ctx)
        return number


PRIORITY = PriorityType()
ID = click.IntRange(1, 2_147_483_647)


def paging(command: Callable) -> Callable:
    command = click.option("--offset", type=click.IntRange(0), default=None, help="Skip this many items.")(command)
    return click.option("--limit", type=click.IntRange(1, 500), default=None, help="At most this many items.")(
        command)


def given(**fields: Any) -> dict:
    """A request body of the options the user actually gave (unset ones stay server defaults)."""
    return {key: value for key, value in fields.items() if value is not None and value != ()}
