"""Confinement for agents' actions: paths that cannot leave the workspace, and bounded shell commands.

Paths: `resolve_in` maps an LLM-supplied relative path to a real path inside the workspace (symlinks
followed), and refuses absolute paths, `..` escapes, symlinks pointing out and anything under `.git`.

Commands: `run_command` runs `bash -c` in the workspace through a small supervisor process (this very
file run as a script with `python -I -S`), so nothing unsafe happens between fork and exec in a threaded
Celery worker (no `preexec_fn`). The supervisor

* sets hard+soft rlimits on itself before spawning the command: address space (per process; a JVM or
  anything reserving large virtual ranges needs a higher memory_mb), CPU seconds (per process), file
  size, processes (RLIMIT_NPROC, as headroom over the uid's current task count) and 1024 open files.
  The command cannot raise them again unless it runs as root: root has CAP_SYS_RESOURCE and is not
  bound by RLIMIT_NPROC at all, so as root only the tree-killing below stops a fork bomb;
* makes itself a child subreaper, so every descendant, even one that calls `setsid` or double-forks,
  is reparented to it and reaped (no zombies, no daemon outliving the command);
* runs the command in a session of its own and, on SIGTERM (the timeout) or when the command exits,
  sends SIGTERM to the command's process group and to every descendant, then SIGKILL every 0.2 s from
  2 s on, until no descendant is left. Leftover background processes never outlive the command.

What this is not: there is no cgroup (so no limit on total memory or CPU across processes, and no pid
limit binding root), no namespace, no separate uid. A command runs with the worker's uid, sees the
whole filesystem and the network, and can read any file that uid can read, e.g. the database file by
absolute path. It is confined by its working directory, by the scrubbed environment (no secrets from
the worker's environment reach it) and by the limits above. Run workers as an unprivileged user, in a
container, for a real boundary.
"""
from __future__ import annotations

import ctypes
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
AGENT_NAME, AGENT_EMAIL = "Loom Agent", "agent@loom.local"
_SUPERVISOR = os.path.abspath(__file__)
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36
_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")
_CHUNK = 65_536


class SandboxError(Exception):
    """A refusal or failure whose message is safe to show to the LLM."""


class PathEscape(SandboxError):
    """A path that would leave the workspace or touch the repository internals."""


def _touches_git(parts: list[str] | tuple[str, ...]) -> bool:
    return any(part.lower() == ".git" for part in parts)


def resolve_in(root: Path, rel: str, *, must_exist: bool = False) -> Path:
    """Resolve `rel` (relative to `root`) to an absolute real path inside root, or raise PathEscape."""
    if not isinstance(rel, str):
        raise PathEscape("path must be a string")
    if "\x00" in rel:
        raise PathEscape("path contains a NUL byte")
    if not rel.strip():
        raise PathEscape("path is empty")
    if rel.startswith(("/", "\\", "~")) or _DRIVE.match(rel):
        raise PathEscape(f"{rel!r} is absolute; use a path relative to the workspace")
    if _touches_git(re.split(r"[\\/]", rel)):
        raise PathEscape(f"{rel!r}: the .git directory is off-limits")
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, rel))  # follows symlinks, also of a missing file's parents
    if os.path.commonpath([base, target]) != base:
        raise PathEscape(f"{rel!r} resolves outside the workspace")
    if _touches_git(Path(os.path.relpath(target, base)).parts):
        raise PathEscape(f"{rel!r}: the .git directory is off-limits")
    if must_exist and not os.path.exists(target):
        raise SandboxError(f"{rel!r}: no such file or directory")
    return Path(target)


@dataclass
class CommandResult:
    exit_code: int | None  # as a shell reports it (128+N when killed by signal N); None on timeout
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration_ms: float


def command_env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a command: fixed safe values plus `extra`; nothing from os.environ."""
    python_dir = os.path.dirname(sys.executable) if sys.executable else ""
    env = {
        "PATH": f"{python_dir}:{SAFE_PATH}" if python_dir else SAFE_PATH,
        "HOME": str(cwd), "LANG": "C.UTF-8", "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1",
        "GIT_AUTHOR_NAME": AGENT_NAME, "GIT_AUTHOR_EMAIL": AGENT_EMAIL,
        "GIT_COMMITTER_NAME": AGENT_NAME, "GIT_COMMITTER_EMAIL": AGENT_EMAIL,
    }
    for key, value in (extra or {}).items():
        if not key or "=" in key or "\x00" in key + str(value):
            raise SandboxError(f"invalid environment variable {key!r}")
        env[key] = str(value)
    return env


def run_command(cwd: Path, command: str, *, timeout: float = 60.0, max_output: int = 16_384,
                env: dict | None = None, memory_mb: int = 2048, cpu_seconds: int = 300,
                max_file_mb: int = 256, max_processes: int = 256) -> CommandResult:
    """Run `command` with bash in `cwd` under limits; see the module docstring for what is enforced.

    stdout and stderr are read concurrently and at most `max_output` bytes of each are kept (the head),
    so a flood never grows memory. On timeout the whole process tree is killed and the partial output
    returned with timed_out=True and exit_code None. A limit <= 0 means "leave unchanged".
    """
    if not isinstance(command, str) or "\x00" in command:
        raise SandboxError("command must be a string without NUL bytes")
    if not timeout or timeout <= 0:
        raise SandboxError("timeout must be a positive number of seconds")
    if not Path(cwd).is_dir():
        raise SandboxError(f"working directory {cwd} does not exist")
    limits = [str(int(v)) for v in (memory_mb, cpu_seconds, max_file_mb, max_processes)]
    argv = [sys.executable or "python3", "-I", "-S", _SUPERVISOR, *limits, command]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=command_env(Path(cwd), env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise SandboxError(f"cannot start the command: {exc.strerror or exc}") from None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
    cut: set[int] = set()
    timed_out, term_at, exited_at = False, None, None
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() or proc.poll() is None:
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > 1.0:  # supervisor gone; only an escaped process could hold the pipes
                    break
            elif term_at is None and now - started >= timeout:
                timed_out, term_at = True, now
                proc.send_signal(signal.SIGTERM)  # the supervisor kills the tree: TERM, then KILL
            elif term_at is not None and now - term_at > 10.0:
                os.killpg(proc.pid, signal.SIGKILL)  # last resort: the supervisor itself is stuck
            for key, _ in sel.select(timeout=0.05):
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                room = max_output - len(bufs[key.fd])
                if len(chunk) > room:
                    cut.add(key.fd)
                bufs[key.fd] += chunk[:max(room, 0)]  # keep the head, drop the rest
    proc.stdout.close()
    proc.stderr.close()
    code = proc.wait()

    def text(fd: int) -> str:
        out = bufs[fd].decode("utf-8", errors="replace")
        return out + f"\n[... output truncated at {max_output} bytes ...]" if fd in cut else out

    return CommandResult(None if timed_out else code, text(out_fd), text(err_fd), timed_out, bool(cut),
                         (time.monotonic() - started) * 1000)


# --- the supervisor: runs in its own process, started by run_command -------------------------------

def _descendants(root: int) -> list[int]:
    """Every process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rpartition(b")")[2].split()[1])
        children.setdefault(ppid, []).append(int(name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def _user_tasks(uid: int) -> int:
    """Processes and threads owned by `uid` now, system-wide: what RLIMIT_NPROC counts."""
    count = 0
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                count += len(os.listdir(f"/proc/{name}/task"))
        except OSError:
            continue
    return count


def _set_limits(memory_mb: int, cpu_seconds: int, max_file_mb: int, max_processes: int) -> None:
    """Hard = soft, clamped to the current hard limits. RLIMIT_NPROC counts every task of the uid (a desktop
    has thousands of threads), so `max_processes` is headroom over the count now, not an absolute number."""
    nproc = _user_tasks(os.getuid()) + max_processes if max_processes > 0 else 0
    for res, value in ((resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_CPU, cpu_seconds),
                       (resource.RLIMIT_FSIZE, max_file_mb * 1024 * 1024),
                       (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_NOFILE, 1024)):
        if value <= 0:
            continue
        _, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))


def _supervise(argv: list[str]) -> int:
    """Spawn the command, reap every descendant, kill the tree on SIGTERM or when the command ends."""
    memory_mb, cpu_seconds, max_file_mb, max_processes = (int(a) for a in argv[:4])
    state = {"main": 0, "stop": False}

    def kill_tree(sig: int) -> None:
        if state["main"]:
            try:
                os.killpg(state["main"], sig)  # atomic for the whole group, even mid-fork
            except OSError:
                pass
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def on_term(_signum: int, _frame: object) -> None:
        state["stop"] = True
        kill_tree(signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, 2.0, 0.2)  # then SIGKILL every 0.2 s

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, lambda _s, _f: kill_tree(signal.SIGKILL))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the worker died: clean up
    try:
        _set_limits(memory_mb, cpu_seconds, max_file_mb, max_processes)
        if state["stop"]:
            return 143
        state["main"] = os.posix_spawnp("bash", ["bash", "-c", argv[4]], os.environ, setsid=True)
    except OSError as exc:
        print(f"sandbox: cannot start the command: {exc}", file=sys.stderr)
        return 127
    status = 0
    while True:
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            return status
        if pid == state["main"]:
            code = os.waitstatus_to_exitcode(wstatus)
            status = code if code >= 0 else 128 - code
            state["main"] = 0  # reaped: never signal that pid (group) again
            on_term(signal.SIGTERM, None)  # leftovers: TERM now, KILL from 2 s on


if __name__ == "__main__":
    sys.exit(_supervise(sys.argv[1:]))
