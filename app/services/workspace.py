"""Per-project git repositories, per-bead worktrees, and the file and git operations agents act through.

Layout: <data_dir>/projects/<id>/{.lock, repo/ (main checkout, stays on the default branch),
worktrees/bead-<id>/ (branch bead/<id>)}. Repository-changing steps hold an flock on .lock, so two
workers (or threads) never race on one project. Every LLM-given path goes through sandbox.resolve_in
(a refusal raises sandbox.PathEscape, also safe to show). Our git runs with a clean environment, no
global/system config, hooks and fsmonitor disabled, and a timeout; an agent's commands can still edit the
shared repository config (same uid), so filter/merge drivers configured there would run: see sandbox.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.services.sandbox import SAFE_PATH, resolve_in

GIT_TIMEOUT, CLONE_TIMEOUT = 60.0, 300.0
_URL = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^[\w.-]+@[\w.-]+:[^\s]+$")
_TRAILER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
# Clutter from tools run with HOME=<worktree>; kept out of commits via the (uncommitted) info/exclude.
_EXCLUDES = ".cache/\n.local/\n.npm/\n__pycache__/\n.bash_history\n.python_history\n.lesshst\n"
SECRET_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("AWS access key", re.compile(r"(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])")),
    ("OpenAI-style API key", re.compile(r"(?<![\w-])sk-(?=[\w-]*\d)[A-Za-z0-9_-]{20,}")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
    ("generic secret assignment", re.compile(
        r"(?i)(?:api[_-]?key|secret|passw(?:or)?d|token)[\w-]*['\"]?\s*[:=]\s*['\"][^'\"\s]{16,}['\"]")),
]


class WorkspaceError(Exception):
    """A refusal or failure whose message is safe to show to the LLM (no paths of the host, no tracebacks)."""


def _git_env(home: Path, index: Path | None = None) -> dict[str, str]:
    env = {"PATH": SAFE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return env | ({"GIT_INDEX_FILE": str(index)} if index else {})


def _git_argv(args: tuple[str, ...]) -> list[str]:
    return ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.quotepath=off",
            *args]


def _git(cwd: Path, *args: str, timeout: float = GIT_TIMEOUT, check: bool = True, stdin: str | None = None,
         index: Path | None = None) -> subprocess.CompletedProcess:
    """Run git; on timeout kill its whole process group; on failure raise a one-line WorkspaceError."""
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


@contextmanager
def _git_lines(cwd: Path, *args: str, timeout: float = GIT_TIMEOUT, index: Path | None = None
               ) -> Iterator[Iterator[str]]:
    """Stream git's stdout line by line (bounded memory for huge diffs); killed when the block ends."""
    proc = subprocess.Popen(_git_argv(args), cwd=cwd, env=_git_env(cwd, index), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, encoding="utf-8",
                            errors="replace", start_new_session=True)
    timer = threading.Timer(timeout, lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        yield iter(proc.stdout)
    finally:
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.wait()


def project_dir(data_dir: str | Path, project_id: int) -> Path:
    return Path(data_dir) / "projects" / str(int(project_id))


@contextmanager
def _project_lock(data_dir: str | Path, project_id: int) -> Iterator[Path]:
    """Exclusive per-project lock; held only around bounded git work (the longest is a clone, 300 s)."""
    pdir = project_dir(data_dir, project_id)
    pdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(pdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # per open file description: excludes other threads too
        yield pdir
    finally:
        os.close(fd)  # releases the lock


def _check_branch(repo: Path, branch: str) -> None:
    if branch.startswith("-") or _git(repo, "check-ref-format", f"refs/heads/{branch}", check=False).returncode:
        raise WorkspaceError(f"invalid branch name {branch!r}")


def _configure(repo: Path) -> None:
    _git(repo, "config", "user.name", "Loom")
    _git(repo, "config", "user.email", "loom@localhost")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text(_EXCLUDES)


def _has_commit(repo: Path, rev: str = "HEAD") -> bool:
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).returncode == 0


def _initial_commit(repo: Path, project_id: int, branch: str) -> None:
    _git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    (repo / "README.md").write_text(f"# Project {project_id}\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "--no-verify", "--no-gpg-sign", "-m", "Initial commit")


def ensure_project_repo(data_dir: str | Path, project_id: int, git_repo: str | None,
                        default_branch: str = "main") -> Path:
    """Create (git init) or clone the project's repository once, on `default_branch`; idempotent."""
    with _project_lock(data_dir, project_id) as pdir:
        repo = pdir / "repo"
        _check_branch(pdir, default_branch)
        if (repo / ".git").is_dir():
            return repo
        shutil.rmtree(repo, ignore_errors=True)  # a half-made repo from a crash
        tmp = pdir / f".repo-tmp-{os.getpid()}-{threading.get_ident()}"  # renamed into place when complete
        try:
            if git_repo is None:
                tmp.mkdir()
                _git(tmp, "init", "-q", "-b", default_branch)
            else:
                source = str(git_repo).strip()
                if source.startswith("-") or not (_URL.match(source) or (os.path.isabs(source)
                                                                           and Path(source).is_dir())):
                    raise WorkspaceError(f"git_repo must be a URL or an existing absolute local path: {source!r}")
                _git(pdir, "clone", "-q", "--", source, tmp.name, timeout=CLONE_TIMEOUT)
            _configure(tmp)
            if not _has_commit(tmp):  # a new or an empty repository
                _initial_commit(tmp, project_id, default_branch)
            elif not _has_commit(tmp, f"refs/heads/{default_branch}"):
                remote = f"refs/remotes/origin/{default_branch}"
                _git(tmp, "checkout", "-q", "-b", default_branch, *([remote] if _has_commit(tmp, remote) else []))
            _git(tmp, "checkout", "-q", default_branch)
            os.rename(tmp, repo)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return repo


def ensure_worktree(data_dir: str | Path, project_id: int, bead_id: int, default_branch: str = "main") -> Path:
    """The bead's own worktree on branch bead/<id> (from default_branch the first time); idempotent."""
    with _project_lock(data_dir, project_id) as pdir:
        repo, wt, branch = pdir / "repo", pdir / "worktrees" / f"bead-{int(bead_id)}", f"bead/{int(bead_id)}"
        if not (repo / ".git").is_dir():
            raise WorkspaceError(f"project {project_id} has no repository yet")
        _check_branch(pdir, default_branch)
        if (wt / ".git").is_file() and _git(wt, "rev-parse", "--show-toplevel", check=False).stdout.strip() \
                == str(wt.resolve()):
            return wt
        shutil.rmtree(wt, ignore_errors=True)
        _git(repo, "worktree", "prune")
        wt.parent.mkdir(exist_ok=True)
        if _has_commit(repo, f"refs/heads/{branch}"):
            _git(repo, "worktree", "add", "-q", str(wt), branch)
        else:
            _git(repo, "worktree", "add", "-q", "-b", branch, str(wt), default_branch)
        return wt


def remove_worktree(data_dir: str | Path, project_id: int, bead_id: int) -> None:
    """Remove the bead's worktree folder and its registration; the branch bead/<id> is kept."""
    with _project_lock(data_dir, project_id) as pdir:
        repo, wt = pdir / "repo", pdir / "worktrees" / f"bead-{int(bead_id)}"
        if (repo / ".git").is_dir():
            _git(repo, "worktree", "remove", "--force", str(wt), check=False)
            shutil.rmtree(wt, ignore_errors=True)
            _git(repo, "worktree", "prune")


def merge_to_default(data_dir: str | Path, project_id: int, bead_id: int, default_branch: str = "main") -> str:
    """Merge bead/<id> into the default branch (--no-ff); on conflict abort, leaving it untouched."""
    with _project_lock(data_dir, project_id) as pdir:
        repo, branch = pdir / "repo", f"bead/{int(bead_id)}"
        _check_branch(pdir, default_branch)
        if not _has_commit(repo, f"refs/heads/{branch}"):
            raise WorkspaceError(f"branch {branch} does not exist")
        _git(repo, "checkout", "-q", default_branch)
        if _git(repo, "merge-base", "--is-ancestor", branch, "HEAD", check=False).returncode == 0:
            return f"{branch} is already merged into {default_branch} ({_short(repo)})"
        merge = _git(repo, "merge", "--no-ff", "--no-edit", "--no-verify", "--no-gpg-sign",
                     "-m", f"Merge bead {int(bead_id)}", branch, check=False)
        if merge.returncode != 0:
            files = _git(repo, "diff", "--name-only", "--diff-filter=U").stdout.split()
            _git(repo, "merge", "--abort", check=False)
            _git(repo, "reset", "-q", "--hard", "HEAD")
            detail = ", ".join(files) or " ".join((merge.stderr or merge.stdout).split())[:300]
            raise WorkspaceError(f"merge conflict: {branch} does not merge cleanly into {default_branch} "
                                 f"({detail}); nothing was merged")
        return f"merged {branch} into {default_branch} as {_short(repo)}"


def _short(root: Path) -> str:
    return _git(root, "rev-parse", "--short", "HEAD").stdout.strip()


def _read_text(path: Path, rel: str, limit: int) -> tuple[bytes, int]:
    if path.is_dir():
        raise WorkspaceError(f"{rel} is a directory; use list_files")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if b"\x00" in data[:8192]:
        raise WorkspaceError(f"{rel} is a binary file")
    return data, path.stat().st_size


def read_file(root: Path, path: str, max_bytes: int = 65_536) -> str:
    data, size = _read_text(resolve_in(root, path, must_exist=True), path, max_bytes)
    text = data[:max_bytes].decode("utf-8", errors="replace")
    return text + f"\n[... truncated at {max_bytes} of {size} bytes ...]" if len(data) > max_bytes else text


def write_file(root: Path, path: str, content: str, max_bytes: int = 1_048_576) -> str:
    """Create or replace a file atomically (temp file + os.replace), creating parent folders."""
    target, data = resolve_in(root, path), content.encode("utf-8")
    if len(data) > max_bytes:
        raise WorkspaceError(f"content is {len(data)} bytes; the limit is {max_bytes}")
    if target.is_dir() or target == Path(os.path.realpath(root)):
        raise WorkspaceError(f"{path} is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    tmp = target.parent / f".{target.name}.loom-{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return f"wrote {len(data)} bytes to {path}"


def edit_file(root: Path, path: str, old: str, new: str) -> str:
    """Replace the one exact occurrence of `old` in the file."""
    if not old:
        raise WorkspaceError("old must not be empty")
    data, _ = _read_text(resolve_in(root, path, must_exist=True), path, 1_048_576)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkspaceError(f"{path} is not UTF-8 text") from None
    count = text.count(old)
    if count != 1:
        hint = "check the exact text with read_file" if count == 0 else "include more surrounding lines"
        raise WorkspaceError(f"old text found {count} times in {path}; it must occur exactly once ({hint})")
    write_file(root, path, text.replace(old, new, 1))
    return f"edited {path}: replaced 1 occurrence"


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if e.name != ".git"), key=lambda e: e.name)
    except OSError:
        return []


def _files(base: Path) -> Iterator[Path]:
    """Regular files under base, sorted, depth first; no .git, no symlinks followed."""
    for entry in _entries(base):
        if entry.is_dir(follow_symlinks=False):
            yield from _files(Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


def list_files(root: Path, path: str = ".", depth: int = 2, max_entries: int = 500) -> str:
    """A sorted tree under `path`, two spaces per level, directories with a trailing "/", no .git."""
    base, depth, lines = resolve_in(root, path, must_exist=True), max(1, min(int(depth), 10)), []
    if not base.is_dir():
        raise WorkspaceError(f"{path} is not a directory")

    def visit(folder: Path, level: int) -> None:
        for entry in _entries(folder):
            if len(lines) >= max_entries:
                return
            is_dir = entry.is_dir(follow_symlinks=False)
            lines.append("  " * level + entry.name + ("/" if is_dir else ""))
            if is_dir and level + 1 < depth:
                visit(Path(entry.path), level + 1)

    visit(base, 0)
    if len(lines) >= max_entries:
        lines.append(f"[... stopped at {max_entries} entries; list a subfolder or lower depth ...]")
    return "\n".join(lines) or "(empty)"


def search_text(root: Path, query: str, path: str = ".", max_matches: int = 200) -> str:
    """Literal search: "file:line: text" for each matching line; skips .git, symlinks and binary files."""
    if not query or "\n" in query:
        raise WorkspaceError("query must be a non-empty single line")
    base, real_root, hits = resolve_in(root, path, must_exist=True), Path(os.path.realpath(root)), []
    for file in [base] if base.is_file() else _files(base):
        try:
            data, _ = _read_text(file, "", 2_000_000)
        except (OSError, WorkspaceError):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if query in line:
                hits.append(f"{file.relative_to(real_root)}:{number}: {line.strip()[:300]}")
                if len(hits) >= max_matches:
                    return "\n".join(hits) + f"\n[... stopped at {max_matches} matches ...]"
    return "\n".join(hits) or f"no matches for {query!r}"


def git_status(root: Path) -> str:
    return _git(root, "status", "--short", "--branch").stdout.rstrip() or "(clean)"


def git_diff(root: Path, max_bytes: int = 65_536) -> str:
    """Everything changed vs HEAD, new files included, staged into a throwaway index (the real one is untouched)."""
    index = Path(_git(root, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="loom-diff-") as tmp:
        temp_index = Path(tmp) / "index"
        if index.exists():
            shutil.copyfile(index, temp_index)
        _git(root, "add", "-A", index=temp_index)
        out = bytearray()
        with _git_lines(root, "diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "HEAD",
                        index=temp_index) as lines:
            for line in lines:
                out += line.encode()
                if len(out) > max_bytes:
                    return out[:max_bytes].decode(errors="ignore") + f"\n[... diff truncated at {max_bytes} bytes ...]"
    return out.decode() or "(no changes)"


def _find_secret(root: Path) -> tuple[str, int, str] | None:
    """The first added line of the staged diff that looks like a secret: (file, line, kind)."""
    file, number, in_header = "?", 0, False
    with _git_lines(root, "diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "-U0") as lines:
        for line in lines:
            if line.startswith("diff --git "):
                in_header = True
            elif in_header and line.startswith("+++ "):
                file = line[4:].rstrip("\n").strip('"').removeprefix("b/")
            elif line.startswith("@@"):
                in_header, match = False, re.search(r"\+(\d+)", line)
                number = int(match.group(1)) if match else 0
            elif not in_header and line.startswith("+"):
                kind = next((k for k, pattern in SECRET_PATTERNS if pattern.search(line)), None)
                if kind:
                    return file, number, kind
                number += 1
    return None


def git_commit(root: Path, message: str, trailers: dict[str, str]) -> str:
    """Stage everything, refuse secrets, commit with "Key: value" trailers; nothing staged is not an error."""
    message = (message or "").strip()
    if not message:
        raise WorkspaceError("the commit message must not be empty")
    if any(not _TRAILER_KEY.match(key) or "\n" in str(value) for key, value in trailers.items()):
        raise WorkspaceError("invalid commit trailer")
    _git(root, "add", "-A")
    if _git(root, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return f"nothing to commit: no changes since {_short(root)} on {_branch(root)}"
    secret = _find_secret(root)
    if secret:
        _git(root, "reset", "-q")
        raise WorkspaceError(f"refusing to commit: {secret[0]} line {secret[1]} looks like a {secret[2]}. "
                             "Remove it (read secrets from the environment instead) and commit again; "
                             "nothing was committed and your changes are unstaged.")
    trailer_block = "".join(f"{key}: {value}\n" for key, value in trailers.items())
    body = f"{message}\n\n{trailer_block}" if trailer_block else f"{message}\n"
    _git(root, "commit", "-q", "--no-verify", "--no-gpg-sign", "-F", "-", stdin=body)
    return f"committed {_short(root)} on {_branch(root)}"


def _branch(root: Path) -> str:
    return _git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
