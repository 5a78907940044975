"""Disk Loom stops needing (real git, real database): worktrees of beads closed past the retention or deleted are
removed and come back from their branch when the bead is reopened; dirty ones are kept; a deleted project's
folder is moved aside."""
from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from app.extensions import db
from app.models import Bead, utcnow
from app.services import workspace, workspace_cleanup, workspace_files
from tests.conftest import unique
from workers import maintenance


def _bead(api, project: dict, title: str) -> int:
    return api.post("/api/v1/beads", json={"project_id": project["id"], "title": title}).get_json()["id"]


def _closed(bead_id: int, ago: timedelta) -> None:
    db.session.execute(update(Bead).where(Bead.id == bead_id).values(status="closed", closed_at=utcnow() - ago))
    db.session.commit()


def test_worktrees_no_bead_needs_are_removed_and_come_back_from_their_branch(ctx, api, project, tmp_path: Path):
    data = tmp_path / "data"
    workspace.ensure_project_repo(data, project["id"], None)
    old, recent, working, dirty, deleted = (_bead(api, project, t) for t in ("old", "recent", "working", "dirty",
                                                                            "deleted"))
    trees = {b: workspace.ensure_worktree(data, project["id"], b) for b in (old, recent, working, dirty, deleted)}
    workspace_files.write_file(trees[old], "result.txt", "the old bead's work\n")
    workspace_files.git_commit(trees[old], "old work", {"Bead": str(old)})
    workspace_files.write_file(trees[dirty], "draft.txt", "not committed\n")
    _closed(old, timedelta(days=2))
    _closed(dirty, timedelta(days=2))
    _closed(recent, timedelta(hours=1))
    assert api.delete(f"/api/v1/beads/{deleted}").status_code == 204

    summary = workspace_cleanup.prune_worktrees(data, retention_s=86_400)
    assert sorted(summary["pruned"]) == sorted([old, deleted]) and summary["kept_dirty"] == [dirty]
    assert not trees[old].exists() and not trees[deleted].exists()
    assert trees[recent].is_dir() and trees[working].is_dir() and (trees[dirty] / "draft.txt").exists()
    repo = data / "projects" / str(project["id"]) / "repo"
    listed = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert f"bead-{old}" not in listed and f"bead-{recent}" in listed  # git's own registrations follow
    branches = subprocess.run(["git", "-C", str(repo), "branch", "--format=%(refname:short)"], capture_output=True,
                              text=True, check=True).stdout.split()
    assert f"bead/{old}" in branches and f"bead/{deleted}" not in branches  # a deleted bead's branch is retired
    assert any(b.startswith(f"deleted/bead-{deleted}-") for b in branches)
    assert workspace_cleanup.prune_worktrees(data, retention_s=86_400)["pruned"] == []  # nothing left to do

    again = workspace.ensure_worktree(data, project["id"], old)  # the bead reopened: its branch comes back
    assert (again / "result.txt").read_text() == "the old bead's work\n"


def test_the_periodic_task_uses_the_data_dir_and_the_retention(ctx, api, project):
    data = ctx.config["DATA_DIR"]
    workspace.ensure_project_repo(data, project["id"], None)
    bead = _bead(api, project, "done long ago")
    tree = workspace.ensure_worktree(data, project["id"], bead)
    _closed(bead, timedelta(days=3))
    retention = ctx.config["WORKTREE_RETENTION_SECONDS"]
    try:
        ctx.config["WORKTREE_RETENTION_SECONDS"] = 0  # 0 keeps every worktree
        assert maintenance.workspace_cleanup_task.run(force=True) is None and tree.is_dir()
        ctx.config["WORKTREE_RETENTION_SECONDS"] = 86_400
        assert bead in maintenance.workspace_cleanup_task.run(force=True)["pruned"] and not tree.exists()
    finally:
        ctx.config["WORKTREE_RETENTION_SECONDS"] = retention
    schedule = ctx.extensions["celery"].conf.beat_schedule["workspace-cleanup"]
    assert schedule["task"] == "loom.workspace_cleanup" and schedule["schedule"] == ctx.config["CLEANUP_INTERVAL"]


def test_a_deleted_projects_folder_is_moved_aside(ctx, api):
    project = api.post("/api/v1/projects", json={"name": unique("gone")}).get_json()
    data = Path(ctx.config["DATA_DIR"])
    repo = workspace.ensure_project_repo(data, project["id"], None)
    workspace.ensure_worktree(data, project["id"], _bead(api, project, "some work"))
    assert api.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    assert not workspace.project_dir(data, project["id"]).exists()  # a later project of that id starts afresh
    (aside,) = [p for p in (data / "deleted").iterdir() if p.name.startswith(f"project-{project['id']}-")]
    assert (aside / "repo" / ".git").is_dir() and (aside / "repo" / "README.md").exists()
    assert not repo.exists()
    other = api.post("/api/v1/projects", json={"name": unique("no-folder")}).get_json()
    assert api.delete(f"/api/v1/projects/{other['id']}").status_code == 204  # never had a folder: fine too


def test_a_deleted_beads_worktree_goes_and_its_branch_is_renamed(ctx, api, project):
    data = Path(ctx.config["DATA_DIR"])
    repo = workspace.ensure_project_repo(data, project["id"], None)
    bead = _bead(api, project, "short-lived")
    tree = workspace.ensure_worktree(data, project["id"], bead)
    workspace_files.write_file(tree, "half.txt", "half done\n")
    workspace_files.git_commit(tree, "half", {})
    assert api.delete(f"/api/v1/beads/{bead}").status_code == 204
    branches = subprocess.run(["git", "-C", str(repo), "branch", "--format=%(refname:short)"], capture_output=True,
                              text=True, check=True).stdout.split()
    assert not tree.exists() and f"bead/{bead}" not in branches
    assert any(b.startswith(f"deleted/bead-{bead}-") for b in branches)  # its commits are kept under another name
    fresh = workspace.ensure_worktree(data, project["id"], bead)  # a later bead given the same number
    assert not (fresh / "half.txt").exists()


def test_a_bead_reopened_since_the_first_look_keeps_its_worktree(ctx, api, project, tmp_path: Path, monkeypatch):
    """The pass decides again under the project's lock, right before removing (here the bead is reopened between
    the pass's first look and its turn at the lock)."""
    data = tmp_path / "data"
    workspace.ensure_project_repo(data, project["id"], None)
    bead = _bead(api, project, "back again")
    tree = workspace.ensure_worktree(data, project["id"], bead)
    _closed(bead, timedelta(days=2))
    real_lock = workspace.project_lock

    def reopened_first(data_dir, project_id):
        db.session.execute(update(Bead).where(Bead.id == bead).values(status="in_progress", closed_at=None))
        db.session.commit()
        return real_lock(data_dir, project_id)
    monkeypatch.setattr(workspace, "project_lock", reopened_first)
    assert workspace_cleanup.prune_worktrees(data, retention_s=86_400) == {"pruned": [], "kept_dirty": []}
    assert tree.is_dir()
