"""The file and git operations agents act through, inside a bead's worktree (see workspace for the layout).

Every LLM-given path goes through sandbox.resolve_in (a refusal raises sandbox.PathEscape, safe to show);
every refusal or failure here raises workspace.WorkspaceError, whose message is also safe to show.
Commits are scanned for secrets (SECRET_PATTERNS) and refused when an added line looks like one. Nested
repositories (a command's `git init` or clone) are never staged: `git add` would run their config as the worker.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from app.services.sandbox import resolve_in
from app.services.workspace import WorkspaceError, run_git, short_head, stream_git

_TRAILER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_STAGE_ENTRY = re.compile(r"^(\d{6}) [0-9a-f]{40,64} \d\t")  # `ls-files --stage`: mode, object, stage, tab, path
NOTHING_STAGED = "nothing staged"
# The first line `git commit` prints (LC_ALL=C): "[main 1a2b3c4] subject", "[main (root-commit) 1a2b3c4] ...",
# "[detached HEAD 1a2b3c4] ..."; branch names hold no spaces.
_COMMITTED = re.compile(r"^\[(?P<branch>detached HEAD|\S+)(?: \(root-commit\))? (?P<head>[0-9a-f]{4,64})\] ")
SECRET_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("AWS access key", re.compile(r"(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])")),
    ("OpenAI-style API key", re.compile(r"(?<![\w-])sk-(?=[\w-]*\d)[A-Za-z0-9_-]{20,}")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
    ("generic secret assignment", re.compile(
        r"(?i)(?:api[_-]?key|secret|passw(?:or)?d|token)[\w-]*['\"]?\s*[:=]\s*['\"][^'\"\s]{16,}['\"]")),
]


def _read_text(path: Path, rel: str, limit: int) -> tuple[bytes, int]:
    if path.is_dir():
        raise WorkspaceError(f"{rel} is a directory; use list_files")
    if not path.is_file():  # a FIFO or device would block or never end
        raise WorkspaceError(f"{rel} is not a regular file")
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
    if path.endswith(("/", "\\")):
        raise WorkspaceError(f"{path} names a folder; write_file needs a file name")
    target, data = resolve_in(root, path), content.encode("utf-8")
    if len(data) > max_bytes:
        raise WorkspaceError(f"content is {len(data)} bytes; the limit is {max_bytes}")
    if target.is_dir():
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


def _refuse_nested_repositories(root: Path) -> None:
    """`git add` runs `git status` inside a nested repository (untracked, or a checked-out submodule) with that
    repository's own config, which a command may have written (a clean filter runs any program): refuse."""
    nested = []  # one listing: untracked paths (a nested repository shows as "dir/"), then the index entries
    for entry in run_git(root, "ls-files", "-z", "--others", "--exclude-standard", "--stage").stdout.split("\0"):
        staged = _STAGE_ENTRY.match(entry)
        if staged is None:
            if entry.endswith("/"):
                nested.append(entry.rstrip("/"))
        elif staged.group(1) == "160000" and os.path.lexists(root / entry.split("\t", 1)[1] / ".git"):
            nested.append(entry.split("\t", 1)[1])
    if nested:
        raise WorkspaceError(f"{nested[0]}/ is a git repository of its own; nested repositories are never staged "
                             f"(their config could run programs): delete {nested[0]}/.git or the folder, then retry")


def git_status(root: Path) -> str:
    return run_git(root, "status", "--short", "--branch").stdout.rstrip() or "(clean)"


def git_diff(root: Path, max_bytes: int = 65_536) -> str:
    """Everything changed vs HEAD, new files included, staged into a throwaway index (the real one is untouched)."""
    index = Path(run_git(root, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="loom-diff-") as tmp:
        temp_index = Path(tmp) / "index"
        if index.exists():
            shutil.copyfile(index, temp_index)
        _refuse_nested_repositories(root)
        run_git(root, "add", "-A", index=temp_index)
        out = bytearray()
        with stream_git(root, "diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "HEAD",
                         index=temp_index) as proc:
            for line in proc.stdout:
                out += line.encode()
                if len(out) > max_bytes:
                    return out[:max_bytes].decode(errors="ignore") + f"\n[... diff truncated at {max_bytes} bytes ...]"
            if proc.wait() != 0:
                raise WorkspaceError("git diff failed or timed out")
    return out.decode() or "(no changes)"


def _find_secret(root: Path) -> str | None:
    """Why the staged changes must not be committed (an added line that looks like a secret), None when they
    may be, or NOTHING_STAGED (the diff is empty)."""
    file, number, in_header, changed = "?", 0, False, False
    with stream_git(root, "diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "-U0") as proc:
        for line in proc.stdout:
            if line.startswith("diff --git "):
                in_header = changed = True
            elif in_header and line.startswith("+++ "):
                file = line[4:].rstrip("\n").strip('"').removeprefix("b/")
            elif line.startswith("@@"):
                in_header, match = False, re.search(r"\+(\d+)", line)
                number = int(match.group(1)) if match else 0
            elif not in_header and line.startswith("+"):
                kind = next((k for k, pattern in SECRET_PATTERNS if pattern.search(line)), None)
                if kind:
                    return (f"{file} line {number} looks like a {kind}. Remove it (read secrets from the "
                            "environment instead) and commit again")
                number += 1
        if proc.wait() != 0:  # fail closed: an unscanned diff is never committed
            return "the staged changes could not be scanned for secrets (git diff failed or timed out)"
    return None if changed else NOTHING_STAGED


def git_commit(root: Path, message: str, trailers: dict[str, str]) -> str:
    """Stage everything, refuse secrets, commit with "Key: value" trailers; nothing staged is not an error."""
    message = (message or "").strip()
    if not message:
        raise WorkspaceError("the commit message must not be empty")
    if any(not _TRAILER_KEY.match(key) or "\n" in str(value) for key, value in trailers.items()):
        raise WorkspaceError("invalid commit trailer")
    _refuse_nested_repositories(root)
    run_git(root, "add", "-A")
    problem = _find_secret(root)  # its diff also tells whether anything is staged
    if problem is NOTHING_STAGED:
        return "nothing to commit: no changes since {} on {}".format(*_head_and_branch(root))
    if problem:
        run_git(root, "reset", "-q")
        raise WorkspaceError(f"refusing to commit: {problem}; nothing was committed and your changes are unstaged")
    trailer_block = "".join(f"{key}: {value}\n" for key, value in trailers.items())
    body = f"{message}\n\n{trailer_block}" if trailer_block else f"{message}\n"
    done = run_git(root, "commit", "--no-verify", "--no-gpg-sign", "-F", "-", stdin=body)
    return "committed {} on {}".format(*_committed_as(done.stdout, root))


def _committed_as(commit_output: str, root: Path) -> tuple[str, str]:
    """The new head and its branch, read off `git commit`'s first line ("[bead/7 1a2b3c4] subject"); asked of
    git only when that line does not parse."""
    said = _COMMITTED.match(commit_output)
    if said is None:
        return _head_and_branch(root)
    return said["head"], "HEAD" if said["branch"] == "detached HEAD" else said["branch"]


def _head_and_branch(root: Path) -> tuple[str, str]:
    """HEAD's short hash and its branch ("HEAD" when detached)."""
    return short_head(root), run_git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
