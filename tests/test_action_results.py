"""What the LLM is told about its actions, on a real folder and the real database: no path of the host in an
error, a folder-looking name refused by write_file, and actions after `done` reported as not run."""
from __future__ import annotations

from app.services import workspace as workspaces
from app.services.actions import ActionContext, apply_actions


def context(app, tmp_path, bead_id: int, project_id: int) -> ActionContext:
    workspaces.ensure_project_repo(tmp_path, project_id, None, "main")
    workspace = workspaces.ensure_worktree(tmp_path, project_id, bead_id, "main")  # the bead's real worktree
    return ActionContext(run_id=1, seq=1, bead_id=bead_id, project_id=project_id, agent_name="eng",
                         workspace=workspace, data_dir=str(tmp_path), default_branch="main", git_strategy="branch",
                         acceptance=None, command_timeout=10)


def test_results_show_no_host_paths_and_nothing_is_dropped_silently(app, api, project, tmp_path):
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "results"}).get_json()
    with app.app_context():
        ctx = context(app, tmp_path, bead["id"], project["id"])
        outcome = apply_actions(ctx, [
            {"type": "write_file", "path": "n" * 300, "content": "x"},  # the OS refuses the name
            {"type": "write_file", "path": "sub/", "content": "x"},
            {"type": "write_file", "path": "ok.txt", "content": "fine"},
            {"type": "done", "reason": "finished"},
            {"type": "write_file", "path": "late.txt", "content": "too late"},
            {"type": "comment", "text": "after done"},
        ])
    too_long, folder, written, done, late, comment = outcome.results
    assert too_long["status"] == "error" and "File name too long" in too_long["output"], too_long
    assert str(tmp_path) not in too_long["output"] and "/worktrees" not in too_long["output"], too_long
    assert folder["status"] == "error" and "names a folder" in folder["output"]
    assert not (ctx.workspace / "sub").exists()
    assert (written["status"], done["status"]) == ("ok", "ok")
    assert [(r["type"], r["status"], r["output"]) for r in (late, comment)] == [
        ("write_file", "error", "not run: the turn ended with done"),
        ("comment", "error", "not run: the turn ended with done")]
    assert not (ctx.workspace / "late.txt").exists()
