"""Bead worktrees against real git in tmp_path: one per bead, idempotent, recreated with their branch, registered
the way git itself would (Loom writes the registration), clean errors, and safe from eight threads at once."""
# ruff: noqa: F811 (the fixtures imported from test_workspace are parameters of the tests by name)
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from app.services import workspace, workspace_files
from app.services.workspace import WorkspaceError
from tests.test_workspace import branch_of, data_dir, git, repo, wt  # noqa: F401 (fixtures)


def test_worktrees_are_separate_and_idempotent(repo: Path, data_dir: Path) -> None:
    one = workspace.ensure_worktree(data_dir, 1, 1)
    two = workspace.ensure_worktree(data_dir, 1, 2)
    assert one == workspace.project_dir(data_dir, 1) / "worktrees" / "bead-1" and one != two
    assert (branch_of(one), branch_of(two), branch_of(repo)) == ("bead/1", "bead/2", "main")
    workspace_files.write_file(one, "only-one.txt", "1")
    assert not (two / "only-one.txt").exists()
    assert workspace.ensure_worktree(data_dir, 1, 1) == one and (one / "only-one.txt").exists()


def test_worktree_recreated_after_folder_deleted_keeps_branch(repo: Path, data_dir: Path) -> None:
    wt = workspace.ensure_worktree(data_dir, 1, 3)
    workspace_files.write_file(wt, "work.txt", "done\n")
    workspace_files.git_commit(wt, "work", {})
    subprocess.run(["rm", "-rf", str(wt)], check=True)
    again = workspace.ensure_worktree(data_dir, 1, 3)
    assert again == wt and branch_of(again) == "bead/3" and (again / "work.txt").read_text() == "done\n"


def test_remove_worktree_keeps_branch(repo: Path, wt: Path, data_dir: Path) -> None:
    workspace_files.write_file(wt, "kept.txt", "x")
    workspace_files.git_commit(wt, "keep", {})
    workspace.remove_worktree(data_dir, 1, 7)
    workspace.remove_worktree(data_dir, 1, 7)  # idempotent
    assert not wt.exists() and "bead/7" in git(repo, "branch", "--list", "bead/7")
    assert (workspace.ensure_worktree(data_dir, 1, 7) / "kept.txt").exists()


def test_a_worktree_is_one_git_knows_and_its_branch_starts_at_the_default_branch(repo: Path, data_dir: Path) -> None:
    """Loom writes the registration itself (one git process instead of four): git must see a worktree like any."""
    workspace_files.write_file(repo, "base.txt", "on main\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    wt = workspace.ensure_worktree(data_dir, 1, 4)
    listed = git(repo, "worktree", "list", "--porcelain")
    assert f"worktree {wt.resolve()}\nHEAD {git(repo, 'rev-parse', 'main').strip()}\nbranch refs/heads/bead/4" in listed
    assert (wt / "base.txt").read_text() == "on main\n" and git(wt, "status", "--porcelain") == ""
    assert "branch: Created from main" in git(repo, "reflog", "show", "bead/4")
    git(repo, "worktree", "prune")  # a live registration survives git's own clean-up
    assert str(wt.resolve()) in git(repo, "worktree", "list")
    workspace_files.write_file(wt, "work.txt", "x")
    assert workspace_files.git_commit(wt, "work", {}).startswith("committed ")
    assert git(repo, "log", "-1", "--format=%s", "bead/4").strip() == "work"
    assert branch_of(repo) == "main" and not (repo / "work.txt").exists()


def test_a_stale_registration_is_replaced_and_a_foreign_one_left_to_git(repo: Path, data_dir: Path) -> None:
    wt = workspace.ensure_worktree(data_dir, 1, 5)
    subprocess.run(["rm", "-rf", str(wt)], check=True)  # the folder went; its registration stayed
    assert (workspace.ensure_worktree(data_dir, 1, 5) / ".git").is_file()
    assert git(repo, "worktree", "list").count("bead-5") == 1
    # The name "bead-6" held by another live folder (made by hand with git): git picks another name for ours.
    elsewhere = data_dir / "elsewhere" / "bead-6"
    elsewhere.parent.mkdir()
    git(repo, "worktree", "add", "-q", "-b", "hand-made", str(elsewhere), "main")
    mine = workspace.ensure_worktree(data_dir, 1, 6)
    assert branch_of(mine) == "bead/6" and branch_of(elsewhere) == "hand-made"
    assert git(repo, "worktree", "list").count("bead-6") == 2


def test_a_worktree_from_a_missing_branch_is_a_clean_error_leaving_nothing(repo: Path, data_dir: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        workspace.ensure_worktree(data_dir, 1, 8, default_branch="no-such-branch")
    assert str(info.value).startswith("git checkout failed:") and "Traceback" not in str(info.value)
    wt = workspace.project_dir(data_dir, 1) / "worktrees" / "bead-8"
    assert not wt.exists() and "bead-8" not in git(repo, "worktree", "list")
    assert workspace.ensure_worktree(data_dir, 1, 8).is_dir()  # and the bead can still get one


def test_worktree_needs_a_repository(data_dir: Path) -> None:
    with pytest.raises(WorkspaceError):
        workspace.ensure_worktree(data_dir, 99, 1)


def test_eight_threads_make_eight_worktrees(data_dir: Path) -> None:
    results: dict[int, Path] = {}
    errors: list[BaseException] = []

    def work(bead_id: int) -> None:
        try:
            workspace.ensure_project_repo(data_dir, 1, None)
            results[bead_id] = workspace.ensure_worktree(data_dir, 1, bead_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results.values())) == 8
    assert all(branch_of(path) == f"bead/{bead}" for bead, path in results.items())
    assert git(workspace.project_dir(data_dir, 1) / "repo", "rev-list", "--count", "HEAD").strip() == "1"
