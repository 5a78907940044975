"""Helpers of the CLI tests: run results read as text, JSON or tables (the fixtures `loom`, `http` and
`live_token` live in conftest.py)."""
from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result

Loom = Callable[..., Result]


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def failed(result: Result) -> str:
    """A clean API failure: exit 1, one `Error: ...` line on stderr, never a traceback."""
    assert result.exit_code == 1, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stderr.startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def as_json(result: Result) -> dict:
    return json.loads(ok(result))


def table(output: str) -> list[list[str]]:
    """A printed table as rows of cells (columns are separated by two or more spaces)."""
    rows = []
    for line in output.splitlines():
        if line.strip():
            rows.append([cell for cell in line.split("  ") if cell.strip() != ""])
    return [[cell.strip() for cell in row] for row in rows]
