"""Carrying out one turn's actions in the bead's workspace; every outcome becomes a result for the LLM."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.extensions import db
from app.services import bead_comments, beads, decisions, sandbox, workspace, workspace_files
from app.services.action_parser import MUTATING, TERMINAL, validate_action
from app.services.errors import ServiceError
from app.services.events import emit

log = logging.getLogger("loom.actions")


@dataclass
class ActionContext:
    run_id: int
    seq: int
    bead_id: int
    project_id: int
    agent_name: str
    workspace: Path
    data_dir: str
    default_branch: str
    git_strategy: str
    acceptance: str | None
    command_timeout: int
    sandbox: sandbox.SandboxPolicy = field(default_factory=sandbox.SandboxPolicy)


@dataclass
class TurnOutcome:
    results: list[dict] = field(default_factory=list)
    terminal: str | None = None  # "done" or "escalated"
    terminal_reason: str | None = None
    invalid: int = 0  # actions refused as malformed
    mutated: bool = False  # anything that changes the world was attempted successfully


def _ok(kind: str, output: str) -> dict:
    return {"type": kind, "status": "ok", "output": output}


def _error(kind: str, output: str) -> dict:
    return {"type": kind, "status": "error", "output": output}


def _command_output(result: sandbox.CommandResult) -> str:
    head = "timed out (killed)" if result.timed_out else f"exit code {result.exit_code}"
    return f"{head}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def _run(ctx: ActionContext, command: str, timeout: float | None) -> dict:
    limit = min(float(timeout or ctx.command_timeout), float(ctx.command_timeout))
    result = sandbox.run_command(ctx.workspace, command, timeout=max(1.0, limit), policy=ctx.sandbox)
    status = "ok" if result.exit_code == 0 and not result.timed_out else "error"
    return {"type": "run_command", "status": status, "output": _command_output(result)}


def _tests_failed(ctx: ActionContext, check: sandbox.CommandResult) -> None:
    """The acceptance check is the verdict on a bead's tests: `test.failed` (the "Fix failing tests" motivation
    listens). A failing test run inside a turn (`run_command`) is not: agents run failing tests while working."""
    output = (check.stderr or check.stdout or "")[-1000:]
    emit("test.failed", project_id=ctx.project_id, bead_id=ctx.bead_id,
         data={"source": "acceptance", "command": ctx.acceptance, "exit_code": check.exit_code,
               "timed_out": check.timed_out, "run_id": ctx.run_id, "seq": ctx.seq, "output": output})


def _done(ctx: ActionContext, action: dict, outcome: TurnOutcome) -> dict:
    if ctx.acceptance:
        check = sandbox.run_command(ctx.workspace, ctx.acceptance, timeout=ctx.command_timeout, policy=ctx.sandbox)
        if check.exit_code != 0 or check.timed_out:
            _tests_failed(ctx, check)
            return _error("done", "not done: the acceptance command failed, fix it and try again\n"
                          f"$ {ctx.acceptance}\n{_command_output(check)}")
    workspace_files.git_commit(ctx.workspace, f"Finish bead #{ctx.bead_id}",
                               {"Bead": str(ctx.bead_id), "Agent": ctx.agent_name})
    merged = ""
    if ctx.git_strategy == "direct":
        merged = "; " + workspace.merge_to_default(ctx.data_dir, ctx.project_id, ctx.bead_id, ctx.default_branch)
    outcome.terminal, outcome.terminal_reason = "done", str(action.get("reason") or "done")
    return _ok("done", f"bead #{ctx.bead_id} is finished{merged}")


def _apply_one(ctx: ActionContext, action: dict, index: int, outcome: TurnOutcome) -> dict:
    kind, ws = action["type"], ctx.workspace
    key = f"run{ctx.run_id}.step{ctx.seq}.action{index}"  # idempotency key for effects kept in the database
    if kind == "read_file":
        return _ok(kind, workspace_files.read_file(ws, action["path"]))
    if kind == "write_file":
        return _ok(kind, workspace_files.write_file(ws, action["path"], action["content"]))
    if kind == "edit_file":
        return _ok(kind, workspace_files.edit_file(ws, action["path"], action["old"], action["new"]))
    if kind == "list_files":
        return _ok(kind, workspace_files.list_files(ws, action.get("path") or ".", int(action.get("depth") or 2)))
    if kind == "search_text":
        return _ok(kind, workspace_files.search_text(ws, action["query"], action.get("path") or "."))
    if kind == "run_command":
        return _run(ctx, action["command"], action.get("timeout"))
    if kind == "git_status":
        return _ok(kind, workspace_files.git_status(ws))
    if kind == "git_diff":
        return _ok(kind, workspace_files.git_diff(ws))
    if kind == "git_commit":
        return _ok(kind, workspace_files.git_commit(ws, action["message"], {"Bead": str(ctx.bead_id),
                                                                           "Agent": ctx.agent_name}))
    if kind == "create_bead":
        created = beads.create_bead(ctx.project_id, action["title"], description=action.get("description") or "",
                                    priority=action.get("priority", 2), tags=action.get("tags") or [],
                                    blocked_by=[int(b) for b in action.get("blocked_by") or []],
                                    created_by=ctx.agent_name, origin_key=key)
        return _ok(kind, f"created bead #{created.id}: {created.title}")
    if kind == "comment":
        bead_comments.add_comment(ctx.bead_id, ctx.agent_name, action["text"], origin_key=key)
        return _ok(kind, "comment added")
    if kind == "escalate":
        decision = decisions.escalate(ctx.bead_id, action["reason"], question=action.get("question"),
                                      options=action.get("options"), actor=ctx.agent_name, origin_key=key)
        outcome.terminal, outcome.terminal_reason = "escalated", f"escalated: decision #{decision.id}"
        return _ok(kind, f"decision #{decision.id} created; this bead waits for a person to decide")
    return _done(ctx, action, outcome)


def apply_actions(ctx: ActionContext, actions: list) -> TurnOutcome:
    """Run the actions in order; stop after a terminal one. Errors are results, never exceptions."""
    outcome = TurnOutcome()
    for index, action in enumerate(actions):
        problem = validate_action(action)
        if problem is not None:
            outcome.invalid += 1
            kind = action.get("type") if isinstance(action, dict) and isinstance(action.get("type"), str) else "?"
            outcome.results.append(_error(kind[:50], problem))
            continue
        try:
            result = _apply_one(ctx, action, index, outcome)
        except (sandbox.SandboxError, workspace.WorkspaceError) as exc:
            result = _error(action["type"], str(exc))
        except ServiceError as exc:
            db.session.rollback()  # drop anything the refused action had flushed
            result = _error(action["type"], exc.message)
        except (OSError, ValueError, UnicodeError) as exc:
            log.warning("action %s failed: %s", action["type"], exc)
            result = _error(action["type"], _without_host_paths(ctx, exc))
        outcome.results.append(result)
        if result["status"] == "ok" and action["type"] in MUTATING:
            outcome.mutated = True
        if outcome.terminal in ("done", "escalated") and action["type"] in TERMINAL:
            for later in actions[index + 1:]:  # said, not silently dropped
                kind = later.get("type") if isinstance(later, dict) and isinstance(later.get("type"), str) else "?"
                outcome.results.append(_error(kind[:50], f"not run: the turn ended with {action['type']}"))
            break
    return outcome


def _without_host_paths(ctx: ActionContext, exc: Exception) -> str:
    """An OS error as the LLM may see it: the workspace is `.`, and no other path of the host shows."""
    text = f"{type(exc).__name__}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else \
        f"{type(exc).__name__}: {exc}"
    for path, shown in ((str(ctx.workspace), "."), (str(ctx.data_dir), "<data dir>")):
        if path:
            text = text.replace(path, shown)
    return text
