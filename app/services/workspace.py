"""Per-project git repositories and per-bead worktrees, plus the git plumbing they and workspace_files share.

Layout: <data_dir>/projects/<id>/{.lock, repo/ (main checkout, stays on the default branch),
worktrees/bead-<id>/ (branch bead/<id>)}. Repository-changing steps hold an flock on .lock, so two
workers (or threads) never race on one project. Our git runs with a clean environment, no global/system
config, hooks and fsmonitor disabled, and a timeout. It accepts worktrees owned by another uid
(safe.directory=*): an isolated sandbox hands the worktree to its own uid and mounts `.git` read-only for
commands, so they cannot plant config or hooks our git would run (without isolation they could: see sandbox).
The file and git operations agents act through live in workspace_files.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.services.sandbox import SAFE_PATH

GIT_TIMEOUT, CLONE_TIMEOUT = 60.0, 300.0
_URL = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^[\w.-]+@[\w.-]+:[^\s]+$")
# Clutter from tools run with HOME=<worktree>; kept out of commits via the (uncommitted) info/exclude.
_EXCLUDES = ".cache/\n.local/\n.npm/\n__pycache__/\n.bash_history\n.python_history\n.lesshst\n"


class WorkspaceError(Exception):
    """A refusal or failure whose message is safe to show to the LLM (no paths of the host, no tracebacks)."""


def _git_env(home: Path, index: Path | None = None) -> dict[str, str]:
    env = {"PATH": SAFE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return env | ({"GIT_INDEX_FILE": str(index)} if index else {})


# Never enter a repository nested in the worktree: its own config (made by a command) could define a filter
# or fsmonitor that `git status` would run, as the worker, when it looks inside a submodule.
_NO_SUBMODULES = ("-c", "diff.ignoreSubmodules=all", "-c", "status.submoduleSummary=false",
                  "-c", "submodule.recurse=false")


def _git_argv(args: tuple[str, ...]) -> list[str]:
    return ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.quotepath=off",
            "-c", "safe.directory=*", *_NO_SUBMODULES, *args]


def run_git(cwd: Path, *args: str, timeout: float = GIT_TIMEOUT, check: bool = True, stdin: str | None = None,
         index: Path | None = None) -> subprocess.CompletedProcess:
    """Run git; on timeout kill its whole process group; on failure raise a one-line WorkspaceError."""
    if not Path(cwd).is_dir():
        raise WorkspaceError("the workspace folder does not exist")
    with subprocess.Popen(_git_argv(args), cwd=cwd, env=_git_env(cwd, index), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                          encoding="utf-8", errors="replace", start_new_session=True) as proc:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise WorkspaceError(f"git {args[0]} timed out after {timeout:g} s") from None
    if check and proc.returncode != 0:
        detail = " ".join((err.strip() or out.strip() or f"exit {proc.returncode}").split())[:500]
        detail = re.sub(r"://[^/@\s]+@", "://***@", detail)  # never echo credentials from a clone URL
        raise WorkspaceError(f"git {args[0]} failed: {detail}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def local_repository_problem(path: str) -> str | None:
    """Why a local `git_repo` cannot be cloned (None: it can): checked when a project names it, not at its
    first bead. A git URL is not checked here (the network may be slow; its first clone says)."""
    if not Path(path).is_dir():
        return f"{path} is not an existing directory"
    try:
        run_git(Path(path), "ls-remote", "-q", "--", path, timeout=10)  # what a clone of it reads first
    except WorkspaceError:
        return f"{path} is not a git repository"
    return None


@contextmanager
def stream_git(cwd: Path, *args: str, timeout: float = GIT_TIMEOUT, index: Path | None = None
                ) -> Iterator[subprocess.Popen]:
    """git with its stdout to read line by line (bounded memory for huge diffs); killed on timeout or
    when the block ends. A caller that reads to the end checks `proc.wait() == 0` (else: failed/killed)."""
    proc = subprocess.Popen(_git_argv(args), cwd=cwd, env=_git_env(cwd, index), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, encoding="utf-8",
                            errors="replace", start_new_session=True)
    timer = threading.Timer(timeout, lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        yield proc
    finally:
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.wait()


def project_dir(data_dir: str | Path, project_id: int) -> Path:
    return Path(data_dir) / "projects" / str(int(project_id))


@contextmanager
def project_lock(data_dir: str | Path, project_id: int) -> Iterator[Path]:
    """Exclusive per-project lock; held only around bounded git work (the longest is a clone, 300 s)."""
    pdir = project_dir(data_dir, project_id)
    pdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(pdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # per open file description: excludes other threads too
        yield pdir
    finally:
        os.close(fd)  # releases the lock


_VALID_BRANCHES: set[str] = set()  # names git accepted (a pure check: every bead's worktree asks for the same one)


def _check_branch(repo: Path, branch: str) -> None:
    if branch in _VALID_BRANCHES:
        return
    if branch.startswith("-") or run_git(repo, "check-ref-format", f"refs/heads/{branch}", check=False).returncode:
        raise WorkspaceError(f"invalid branch name {branch!r}")
    if len(_VALID_BRANCHES) < 1000:
        _VALID_BRANCHES.add(branch)


def _configure(repo: Path) -> None:
    run_git(repo, "config", "user.name", "Loom")
    run_git(repo, "config", "user.email", "loom@localhost")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text(_EXCLUDES)


def _has_commit(repo: Path, rev: str = "HEAD") -> bool:
    return run_git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).returncode == 0


def _initial_commit(repo: Path, project_id: int, branch: str) -> None:
    run_git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    (repo / "README.md").write_text(f"# Project {project_id}\n")
    run_git(repo, "add", "README.md")
    run_git(repo, "commit", "-q", "--no-verify", "--no-gpg-sign", "-m", "Initial commit")


def ensure_project_repo(data_dir: str | Path, project_id: int, git_repo: str | None,
                        default_branch: str = "main") -> Path:
    """Create (git init) or clone the project's repository once, on `default_branch`; idempotent."""
    with project_lock(data_dir, project_id) as pdir:
        repo = pdir / "repo"
        _check_branch(pdir, default_branch)
        if (repo / ".git").is_dir():
            return repo
        shutil.rmtree(repo, ignore_errors=True)  # a half-made repo from a crash
        tmp = pdir / f".repo-tmp-{os.getpid()}-{threading.get_ident()}"  # renamed into place when complete
        try:
            if git_repo is None:
                tmp.mkdir()
                run_git(tmp, "init", "-q", "-b", default_branch)
            else:
                source = str(git_repo).strip()
                if source.startswith("-") or not (_URL.match(source) or (os.path.isabs(source)
                                                                           and Path(source).is_dir())):
                    raise WorkspaceError(f"git_repo must be a URL or an existing absolute local path: {source!r}")
                run_git(pdir, "clone", "-q", "--", source, tmp.name, timeout=CLONE_TIMEOUT)
            _configure(tmp)
            if not _has_commit(tmp):  # a new or an empty repository
                _initial_commit(tmp, project_id, default_branch)
            elif not _has_commit(tmp, f"refs/heads/{default_branch}"):
                remote = f"refs/remotes/origin/{default_branch}"
                run_git(tmp, "checkout", "-q", "-b", default_branch, *([remote] if _has_commit(tmp, remote) else []))
            run_git(tmp, "checkout", "-q", default_branch)
            os.rename(tmp, repo)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return repo


def ensure_worktree(data_dir: str | Path, project_id: int, bead_id: int, default_branch: str = "main") -> Path:
    """The bead's own worktree on branch bead/<id> (from default_branch the first time); idempotent.

    A folder that is no longer a valid worktree is replaced (its uncommitted changes are lost; committed
    work lives on the branch, which is reused)."""
    with project_lock(data_dir, project_id) as pdir:
        repo, wt, branch = pdir / "repo", pdir / "worktrees" / f"bead-{int(bead_id)}", f"bead/{int(bead_id)}"
        if not (repo / ".git").is_dir():
            raise WorkspaceError(f"project {project_id} has no repository yet")
        _check_branch(pdir, default_branch)
        if (wt / ".git").is_file() and run_git(wt, "rev-parse", "--show-toplevel", check=False).stdout.strip() \
                == str(wt.resolve()):
            return wt
        shutil.rmtree(wt, ignore_errors=True)
        wt.parent.mkdir(exist_ok=True)
        if not _register_worktree(repo, wt, branch):  # another worktree holds the name: let git pick one
            run_git(repo, "worktree", "prune")
            if _has_commit(repo, f"refs/heads/{branch}"):
                run_git(repo, "worktree", "add", "-q", str(wt), branch)
            else:
                run_git(repo, "worktree", "add", "-q", "-b", branch, str(wt), default_branch)
            return wt
        # The usual case, a bead's first turn: one git process makes the branch and fills the folder.
        made = run_git(wt, "checkout", "-q", "-b", branch, default_branch, check=False)
        if made.returncode != 0:
            if not _has_commit(repo, f"refs/heads/{branch}"):  # not "the branch exists": a real failure
                _unregister_worktree(repo, wt)
                raise WorkspaceError("git checkout failed: " + " ".join((made.stderr or made.stdout).split())[:300])
            run_git(wt, "reset", "-q", "--hard")  # a reopened bead: its branch as it was left
        return wt


def _register_worktree(repo: Path, wt: Path, branch: str) -> bool:
    """Register `wt` as a worktree of `repo` on `branch` the way `git worktree add` does, with the files
    gitrepository-layout(5) documents (worktrees/<id>/{HEAD,commondir,gitdir} and the folder's `.git` file),
    but without its three git processes (branch, symbolic-ref, reset). HEAD names the branch, which need not
    exist yet. A stale registration of this same folder is replaced; False when the name belongs to another
    folder that still exists (then git must choose a name)."""
    admin = repo / ".git" / "worktrees" / wt.name
    try:
        return _write_registration(admin, wt, branch)
    except OSError as exc:
        _unregister_worktree(repo, wt)
        raise WorkspaceError(f"could not register the worktree {wt.name}: {exc.strerror or exc}") from None


def _write_registration(admin: Path, wt: Path, branch: str) -> bool:
    if admin.exists():
        try:
            registered = Path((admin / "gitdir").read_text().strip())
        except OSError:
            registered = None
        if registered is not None and registered != wt.resolve() / ".git" and registered.exists():
            return False
        shutil.rmtree(admin)
    admin.mkdir(parents=True)
    wt.mkdir()
    (admin / "commondir").write_text("../..\n")
    (admin / "gitdir").write_text(f"{wt.resolve() / '.git'}\n")
    (admin / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    (wt / ".git").write_text(f"gitdir: {admin.resolve()}\n")
    return True


def _unregister_worktree(repo: Path, wt: Path) -> None:
    shutil.rmtree(repo / ".git" / "worktrees" / wt.name, ignore_errors=True)
    shutil.rmtree(wt, ignore_errors=True)


def remove_worktree(data_dir: str | Path, project_id: int, bead_id: int) -> None:
    """Remove the bead's worktree folder and its registration; the branch bead/<id> is kept."""
    with project_lock(data_dir, project_id) as pdir:
        remove_worktree_locked(pdir, bead_id)


def remove_worktree_locked(pdir: Path, bead_id: int) -> None:
    """remove_worktree for a caller that holds the project's lock already (a second flock would wait for itself)."""
    repo, wt = pdir / "repo", pdir / "worktrees" / f"bead-{int(bead_id)}"
    has_repo = (repo / ".git").is_dir()
    if has_repo:
        run_git(repo, "worktree", "remove", "--force", str(wt), check=False)
    shutil.rmtree(wt, ignore_errors=True)  # what git left (or a folder whose repository is gone)
    if has_repo:
        run_git(repo, "worktree", "prune")


def merge_to_default(data_dir: str | Path, project_id: int, bead_id: int, default_branch: str = "main") -> str:
    """Merge bead/<id> into the default branch (--no-ff); on conflict abort, leaving it untouched."""
    with project_lock(data_dir, project_id) as pdir:
        repo, branch = pdir / "repo", f"bead/{int(bead_id)}"
        _check_branch(pdir, default_branch)
        if not _has_commit(repo, f"refs/heads/{branch}"):
            raise WorkspaceError(f"branch {branch} does not exist")
        run_git(repo, "checkout", "-q", default_branch)
        if run_git(repo, "merge-base", "--is-ancestor", branch, "HEAD", check=False).returncode == 0:
            return f"{branch} is already merged into {default_branch} ({short_head(repo)})"
        merge = run_git(repo, "merge", "--no-ff", "--no-edit", "--no-verify", "--no-gpg-sign",
                     "-m", f"Merge bead {int(bead_id)}", branch, check=False)
        if merge.returncode != 0:
            files = run_git(repo, "diff", "--name-only", "--diff-filter=U").stdout.split()
            run_git(repo, "merge", "--abort", check=False)
            run_git(repo, "reset", "-q", "--hard", "HEAD")
            detail = ", ".join(files) or " ".join((merge.stderr or merge.stdout).split())[:300]
            raise WorkspaceError(f"merge conflict: {branch} does not merge cleanly into {default_branch} "
                                 f"({detail}); nothing was merged")
        return f"merged {branch} into {default_branch} as {short_head(repo)}"


def short_head(root: Path) -> str:
    return run_git(root, "rev-parse", "--short", "HEAD").stdout.strip()


def list_branches(data_dir: str | Path, project_id: int, limit: int = 200) -> list[dict]:
    """The project repository's branches, newest commit first: {name, head, subject, date} (empty if no repo)."""
    repo = project_dir(data_dir, project_id) / "repo"
    if not (repo / ".git").is_dir():
        return []
    out = run_git(repo, "for-each-ref", "--sort=-committerdate", f"--count={int(limit)}",
                  "--format=%(refname:short)%09%(objectname:short)%09%(committerdate:iso-strict)%09%(subject)",
                  "refs/heads", check=False).stdout
    branches = []
    for line in out.splitlines():
        name, head, date, subject = (line.split("\t", 3) + ["", "", ""])[:4]
        branches.append({"name": name, "head": head, "date": date, "subject": subject})
    return branches
