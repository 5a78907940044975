"""Disk that Loom stops needing: worktrees of beads closed a while ago, and the folders of deleted projects.

A bead's worktree (<data_dir>/projects/<id>/worktrees/bead-<id>) is a full checkout: left alone, every bead ever
worked on keeps one (one seen here held 257 MB). Once a bead has been closed for the retention period, or no
longer exists, its worktree is removed; the branch bead/<id> keeps its commits, and a reopened bead gets its
worktree back from it on its next turn. A worktree with uncommitted changes of a bead that still exists is kept
(nothing a person might want is thrown away); it is reported in the summary.

A deleted project's folder is moved to <data_dir>/deleted/ (its repository may be the only copy of the agents'
work), and a deleted bead's branch is renamed: nothing on disk is reused by a project or bead created later under
the same number (SQLite hands out the number of the newest row again once it is deleted); an operator removes
<data_dir>/deleted/ when sure.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import Bead, utcnow
from app.services import workspace
from app.services.workspace import WorkspaceError

log = logging.getLogger("loom.workspace")
_WORKTREE = re.compile(r"^bead-(\d{1,10})$")
PRUNE_BATCH = 50  # worktrees removed in one pass at most (each is a git call and a folder delete)
DELETED_DIR = "deleted"


def worktrees_on_disk(data_dir: str | Path) -> list[tuple[int, int]]:
    """(project id, bead id) of every bead worktree folder under the data directory."""
    found = []
    root = Path(data_dir) / "projects"
    for project in _subdirs(root):
        if not project.name.isdigit():
            continue
        for tree in _subdirs(project / "worktrees"):
            match = _WORKTREE.match(tree.name)
            if match:
                found.append((int(project.name), int(match.group(1))))
    return sorted(found)


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _dirty(tree: Path) -> bool:
    """Uncommitted changes (or an unreadable worktree: kept, to be safe)."""
    try:
        return bool(workspace.run_git(tree, "status", "--porcelain", "--untracked-files=all").stdout.strip())
    except WorkspaceError:
        return True


def _bead_rows(ids: list[int]) -> dict[int, tuple[int, str, datetime | None]]:
    """bead id -> (project id, status, closed_at), for the ids that still exist."""
    rows: dict[int, tuple[int, str, datetime | None]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for bead_id, project_id, status, closed_at in db.session.execute(
                select(Bead.id, Bead.project_id, Bead.status, Bead.closed_at).where(Bead.id.in_(chunk))):
            rows[bead_id] = (project_id, status, closed_at)
    db.session.commit()  # no transaction held open over the git calls that follow
    return rows


def _verdict(bead: tuple[int, str, datetime | None] | None, project_id: int, cutoff: datetime) -> str | None:
    """"gone" (deleted, or the number now names another project's bead), "closed" (closed before the cutoff), or
    None (still needed)."""
    if bead is None or bead[0] != project_id:
        return "gone"
    return "closed" if bead[1] == "closed" and bead[2] is not None and bead[2] <= cutoff else None


def prune_worktrees(data_dir: str | Path, retention_s: float, now: datetime | None = None,
                    limit: int = PRUNE_BATCH) -> dict:
    """Remove the worktrees no bead needs any more: {"pruned": [bead ids], "kept_dirty": [bead ids]}.

    Each one is decided again under its project's lock, right before it goes: a bead reopened and started since
    the first look keeps its worktree (a turn that makes or repairs a worktree takes the same lock)."""
    cutoff = (now or utcnow()) - timedelta(seconds=retention_s)
    on_disk = worktrees_on_disk(data_dir)
    first_look = _bead_rows([bead_id for _, bead_id in on_disk])
    pruned, kept = [], []
    for project_id, bead_id in on_disk:
        if len(pruned) >= limit:
            break
        if _verdict(first_look.get(bead_id), project_id, cutoff) is None:
            continue
        try:
            with workspace.project_lock(data_dir, project_id) as pdir:
                verdict = _verdict(_bead_rows([bead_id]).get(bead_id), project_id, cutoff)
                tree = pdir / "worktrees" / f"bead-{bead_id}"
                if verdict is None:
                    continue
                if verdict == "closed" and _dirty(tree):
                    kept.append(bead_id)
                    continue
                workspace.remove_worktree_locked(pdir, bead_id)
                if verdict == "gone":
                    _retire_branch(pdir / "repo", bead_id, now)
        except (WorkspaceError, OSError) as exc:
            log.warning("worktree of bead %s in project %s not removed: %s", bead_id, project_id, exc)
            continue
        if tree.exists():
            log.warning("worktree of bead %s in project %s could not be removed", bead_id, project_id)
        else:
            pruned.append(bead_id)
    if pruned:
        log.info("removed %d worktrees of beads closed over %s s ago or deleted: %s", len(pruned), int(retention_s),
                 pruned)
    return {"pruned": pruned, "kept_dirty": kept}


def _retire_branch(repo: Path, bead_id: int, now: datetime | None) -> None:
    """bead/<id> becomes deleted/bead-<id>-<time> (its commits stay); nothing when there is no such branch."""
    branch = f"bead/{int(bead_id)}"
    if not (repo / ".git").is_dir() or workspace.run_git(
            repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode:
        return
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
    workspace.run_git(repo, "branch", "-m", branch, f"deleted/bead-{int(bead_id)}-{stamp}")


def retire_bead_workspace(data_dir: str | Path, project_id: int, bead_id: int, now: datetime | None = None) -> None:
    """A deleted bead's worktree goes and its branch is renamed deleted/bead-<id>-<time> (its commits stay), so a
    bead that gets the same number later (SQLite can hand one out again) starts from the default branch."""
    if not workspace.project_dir(data_dir, project_id).is_dir():
        return
    with workspace.project_lock(data_dir, project_id) as pdir:
        workspace.remove_worktree_locked(pdir, bead_id)
        _retire_branch(pdir / "repo", bead_id, now)


def set_aside_project_folder(data_dir: str | Path, project_id: int, now: datetime | None = None) -> Path | None:
    """Move a deleted project's folder to <data_dir>/deleted/project-<id>-<time>; where it went (None: none)."""
    source = workspace.project_dir(data_dir, project_id)
    if not source.exists():
        return None
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%S%fZ")
    target = Path(data_dir) / DELETED_DIR / f"project-{int(project_id)}-{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with workspace.project_lock(data_dir, project_id):  # no git of a running step is cut in half
        try:
            os.rename(source, target)
        except OSError:  # another filesystem: copy, then remove
            shutil.copytree(source, target, symlinks=True)
            shutil.rmtree(source)
    log.info("project %s deleted: its folder moved to %s", project_id, target)
    return target
