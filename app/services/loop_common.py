"""What the loop's modules share (app/services/loop.py runs a turn, loop_llm.py asks the LLM in it, pair_turn.py
takes a person's turn): the loop's settings, what a turn decided, ending a run, and the bead's workspace."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.extensions import db
from app.models import Project, Run, utcnow
from app.services import workspace
from app.services.events import emit
from app.services.sandbox import SandboxPolicy


@dataclass
class LoopSettings:
    data_dir: str
    lease_seconds: int = 300
    max_iterations: int = 25
    context_chars: int = 120_000
    command_timeout: int = 120
    error_backoff_s: float = 2.0
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)


@dataclass
class StepOutcome:
    next_step: bool
    delay_s: float = 0.0
    reason: str | None = None
    project_id: int | None = None
    dedicated: bool | None = None  # the project's steps go to its own queue (None: not looked up in this step)
    person_holds: bool | None = None  # a person paused the run during the turn (None: not looked up in this step)
    bead_id: int | None = None  # the run's (for the worker's log lines; None when the run was not read)
    agent_id: int | None = None  # the run's: when the bead is done, it goes on to its next bead (hand-off)


def finish_run(run: Run, status: str, reason: str, *, release_hold: bool = False) -> None:
    """End the run (finished, failed, stopped or abandoned) and say so; a pair turn also drops the person's hold."""
    run.status, run.terminal_reason, run.finished_at = status, reason, utcnow()
    if release_hold:
        run.paused_by = run.paused_at = None
    db.session.commit()
    emit("run.finished", project_id=run.project_id, bead_id=run.bead_id, agent_id=run.agent_id,
         data={"run_id": run.id, "status": status, "reason": reason, "iterations": run.iterations})


def _worktree_path(run: Run, project: Project, settings: LoopSettings) -> Path:
    return workspace.project_dir(settings.data_dir, project.id) / "worktrees" / f"bead-{run.bead_id}"


def worktree_ready(run: Run, project: Project, settings: LoopSettings) -> bool:
    return (_worktree_path(run, project, settings) / ".git").exists()


def workspace_for(run: Run, project: Project, settings: LoopSettings) -> Path:
    """The bead's worktree, made (with the project's repository, the first time) when it is missing."""
    project_dir = workspace.project_dir(settings.data_dir, project.id)
    path = _worktree_path(run, project, settings)
    if (path / ".git").exists():
        return path
    if not (project_dir / "repo" / ".git").is_dir():  # only the project's first bead pays for the repository
        workspace.ensure_project_repo(settings.data_dir, project.id, project.git_repo, project.default_branch)
    return workspace.ensure_worktree(settings.data_dir, project.id, run.bead_id, project.default_branch)


def token_batcher(publish: Callable[[str], None], every_s: float = 0.1) -> Callable[[str], None]:
    """Streamed pieces, handed to `publish` joined at most every `every_s` (about 10 events a second); the
    returned callable's `.flush()` publishes what is left."""
    buffer: list[str] = []
    last = [time.monotonic()]

    def flush() -> None:
        if buffer:
            publish("".join(buffer))
            buffer.clear()
        last[0] = time.monotonic()

    def on_delta(piece: str) -> None:
        buffer.append(piece)
        if time.monotonic() - last[0] >= every_s:
            flush()

    on_delta.flush = flush  # type: ignore[attr-defined]
    return on_delta
