"""`loom pair BEAD_ID MESSAGE`: chat with the agent on a bead (the reply streams here); `loom bead pause|resume`."""
from __future__ import annotations

import json

import click

from app.cli.client import CliError, Session, pass_session
from app.cli.commands_beads import bead
from app.cli.group import cli
from app.cli.options import ID
from app.cli.output import say


def _first_line(text: object, width: int = 100) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


@cli.command("pair")
@click.argument("bead_id", metavar="BEAD_ID", type=ID)
@click.argument("message")
@pass_session
def pair(session: Session, bead_id: int, message: str) -> None:
    """Send the agent on a bead a message: its reply streams to stdout, then what its actions did.

    The bead's loop is paused while you pair (it finishes its current step first); hand the bead back with
    `loom bead resume BEAD_ID`. With -o json every event is printed as one JSON line.
    """
    failed = None
    for name, data in session.client().stream("/pair", {"bead_id": bead_id, "message": message}):
        if session.json:
            click.echo(json.dumps({"event": name, "data": data}, ensure_ascii=False))
        elif name == "chunk":
            click.echo(data.get("text", ""), nl=False)
        elif name == "actions":
            click.echo("")
            for result in data.get("results", []):
                mark = "ok " if result.get("status") == "ok" else "ERR"
                click.echo(f"[{mark}] {result.get('type')}: {_first_line(result.get('output'))}")
        elif name == "done":
            step = data.get("step", {})
            click.echo(f"(pair turn {step.get('seq')} applied; the loop waits until `loom bead resume {bead_id}`)")
        if name == "error":
            failed = data
    if failed is not None:
        raise CliError(f"{failed.get('message')} ({failed.get('code')})")


@bead.command("pause")
@click.argument("bead_id", metavar="ID", type=ID)
@pass_session
def bead_pause(session: Session, bead_id: int) -> None:
    """Pause a bead's loop for pair programming (it finishes its current step first)."""
    answer = session.client().post(f"/beads/{bead_id}/pause")
    say(session, answer, f"Bead {bead_id} paused by {answer.get('paused_by')}: the loop waits")


@bead.command("resume")
@click.argument("bead_id", metavar="ID", type=ID)
@pass_session
def bead_resume(session: Session, bead_id: int) -> None:
    """Hand a paused bead back to its loop."""
    answer = session.client().post(f"/beads/{bead_id}/resume")
    say(session, answer, f"Bead {bead_id} handed back to the loop")
