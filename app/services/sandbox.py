"""Confinement for agents' actions: paths that cannot leave the workspace, and isolated, bounded shell commands.

Paths: `resolve_in` maps an LLM-supplied relative path to a real path inside the workspace (symlinks
followed), and refuses absolute paths, `..` escapes, symlinks pointing out and anything under `.git`.

Commands: `run_command` runs `bash -c` in the workspace through a supervisor process (sandbox_supervisor,
run with `python -I -S`: no preexec_fn in the threaded worker). Always: a scrubbed environment (nothing
from the worker's), hard rlimits (address space and CPU per process, file size, 1024 open files, processes
as headroom over the uid's current count), stdout/stderr capped at `max_output` bytes each, and on timeout
or exit the whole process tree killed (TERM, then KILL from 2 s on); the result carries the exit code
(128+N for signal N), timed_out and truncated.

Isolation (sandbox_isolation, sandbox_root), per SandboxPolicy, from SANDBOX, SANDBOX_NETWORK, SANDBOX_UID:

* each command gets new mount, PID, IPC and UTS namespaces, and a network namespace with only loopback
  unless SANDBOX_NETWORK=host. Its root holds only /usr, /bin, /sbin, /lib*, /etc (shadow files and
  private keys masked) and the Python installation and venv, read-only; the workspace read-write at the
  same absolute path, with its `.git` and the repository's git dir read-only (git log/status/diff work,
  hooks and config cannot be changed; commit through git_commit); a fresh tmpfs /tmp, a minimal /dev and
  the PID namespace's own /proc. The data dir (database, secret_key, other projects, logs), the Loom
  source, /root and /home are not there; nor is any process outside the sandbox. When the namespace's
  init ends, every process left in it dies, fork bombs and daemons included, so nothing a command
  started is still running when the worker next touches the workspace.
* a root worker runs the command as SANDBOX_UID (default 65534, gid the same) with no_new_privs, after
  handing the workspace to that uid (the worker's git runs with safe.directory=* and never stages a
  nested repository, whose config a command could have written); RLIMIT_NPROC then binds (headroom over
  the uid's tasks at start, which other sandboxes share). A non-root worker uses an unprivileged user
  namespace that maps only its own uid, so the command holds no capability and cannot undo the mounts
  (any namespace it makes sees them locked).
* SANDBOX=auto (default) isolates when this machine allows it (probed once per process by running `true`
  in a real sandbox) and otherwise runs commands as before, confined only by the above, logging one
  warning; strict refuses to run commands without isolation (an error result the LLM reads); off never
  isolates. A sandbox that cannot be built for one command fails that command (exit 125), never runs it
  unconfined. What this is not: no cgroup (no limit on total memory or CPU across a command's processes),
  no seccomp filter; the kernel is shared.
"""
from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
AGENT_NAME, AGENT_EMAIL = "Loom Agent", "agent@loom.local"
_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_supervisor.py")
_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")
_CHUNK = 65_536
MODES, NETWORKS = ("auto", "strict", "off"), ("none", "host")
# Inside the sandbox the repository belongs to another uid than the command's: let git read it anyway.
_GIT_SAFE = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}
log = logging.getLogger("loom.sandbox")


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


@dataclass(frozen=True)
class SandboxPolicy:
    """How commands are isolated; built from the settings SANDBOX, SANDBOX_NETWORK and SANDBOX_UID."""
    mode: str = "auto"  # auto: isolate when possible; strict: refuse commands without isolation; off: never
    network: str = "none"  # none: loopback only; host: the worker's network
    uid: int = 65534  # the uid (and gid) a root worker runs commands as
    tmp_mb: int = 256  # size of the command's /tmp (a tmpfs: memory)

    @classmethod
    def from_settings(cls, mode: str, network: str, uid: int) -> SandboxPolicy:
        """From the SANDBOX, SANDBOX_NETWORK and SANDBOX_UID settings (case and spaces ignored)."""
        return cls(str(mode).strip().lower(), str(network).strip().lower(), uid)

    def problem(self) -> str | None:
        if self.mode not in MODES:
            return f"SANDBOX must be one of {', '.join(MODES)}, not {self.mode!r}"
        if self.network not in NETWORKS:
            return f"SANDBOX_NETWORK must be one of {', '.join(NETWORKS)}, not {self.network!r}"
        if not isinstance(self.uid, int) or not 0 < self.uid < 2**32 - 1:
            return f"SANDBOX_UID must be a uid other than root (0), not {self.uid!r}"
        return None


@dataclass
class CommandResult:
    exit_code: int | None  # as a shell reports it (128+N when killed by signal N); None on timeout
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool
    duration_ms: float
    isolated: bool = False  # it ran in the namespaces of sandbox_isolation


_probe_lock = threading.Lock()
_probed: dict[tuple, str | None] = {}
_warned: set[tuple] = set()


def isolation_problem(policy: SandboxPolicy) -> str | None:
    """Why commands cannot be isolated on this machine under `policy` (None: they can). Found out once per
    process and policy by running `true` in a real sandbox."""
    key = (policy.network, policy.uid, policy.tmp_mb)
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe(policy)
        return _probed[key]


def _probe(policy: SandboxPolicy) -> str | None:
    if not sys.platform.startswith("linux"):
        return f"Linux namespaces are not available on {sys.platform}"
    try:
        with tempfile.TemporaryDirectory(prefix="loom-sandbox-probe-") as tmp:
            result = _execute(Path(tmp), "true", _isolation_arg(policy), timeout=30, max_output=4096, env=None,
                              limits=(0, 0, 0, 0))
    except (SandboxError, OSError) as exc:
        return str(exc)
    if result.exit_code == 0:
        return None
    lines = (result.stderr.strip() or f"the probe exited with {result.exit_code}").splitlines()
    return lines[-1].removeprefix("sandbox: ").removeprefix("cannot isolate the command: ")[:300]


def _isolation_arg(policy: SandboxPolicy) -> str:
    return f"{policy.network},{policy.uid},{policy.tmp_mb}"


def _choose(policy: SandboxPolicy) -> str:
    """The supervisor's isolation argument ("-" for none) under `policy`; raises SandboxError when refused."""
    problem = policy.problem()
    if problem:
        raise SandboxError(f"commands are refused: the sandbox is misconfigured ({problem})")
    if policy.mode == "off":
        return "-"
    why = isolation_problem(policy)
    if why is None:
        return _isolation_arg(policy)
    if policy.mode == "strict":
        raise SandboxError(f"commands are refused: SANDBOX=strict and this machine cannot isolate them ({why})")
    key = (policy.network, policy.uid, policy.tmp_mb)
    if key not in _warned:
        _warned.add(key)
        log.warning("sandbox: commands run WITHOUT isolation (SANDBOX=auto; namespaces unavailable: %s). They "
                    "can read what the worker's uid can read; set LOOM_SANDBOX=strict to refuse them instead", why)
    return "-"


def describe(policy: SandboxPolicy) -> dict:
    """The effective sandbox, for /health/ready: mode, isolation ("namespaces" or "none"), network."""
    info: dict = {"mode": policy.mode, "network": policy.network, "isolation": "none"}
    problem = policy.problem()
    if problem:
        return info | {"error": problem}
    if policy.mode != "off":
        why = isolation_problem(policy)
        if why is None:
            info["isolation"] = "namespaces"
            info["uid"] = policy.uid if os.getuid() == 0 else os.getuid()
        else:
            info["reason"] = why
            info["commands"] = "refused" if policy.mode == "strict" else "unconfined"
    return info


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
                max_file_mb: int = 256, max_processes: int = 256,
                policy: SandboxPolicy | None = None) -> CommandResult:
    """Run `command` with bash in `cwd` under limits and, per `policy` (default: auto), isolated; see the
    module docstring for what is enforced.

    stdout and stderr are read concurrently and at most `max_output` bytes of each are kept (the head),
    so a flood never grows memory. On timeout the whole process tree is killed and the partial output
    returned with timed_out=True and exit_code None. A limit <= 0 means "leave unchanged".
    Raises SandboxError for invalid arguments, and when the policy refuses to run the command.
    """
    if not isinstance(command, str) or "\x00" in command:
        raise SandboxError("command must be a string without NUL bytes")
    if not timeout or timeout <= 0:
        raise SandboxError("timeout must be a positive number of seconds")
    if not Path(cwd).is_dir():
        raise SandboxError(f"working directory {cwd} does not exist")
    command_env(Path(cwd), env)  # refuse a bad environment before anything runs
    isolation = _choose(policy or SandboxPolicy())
    return _execute(Path(os.path.realpath(cwd)), command, isolation, timeout=timeout, max_output=max_output,
                    env=env, limits=(memory_mb, cpu_seconds, max_file_mb, max_processes))


def _execute(cwd: Path, command: str, isolation: str, *, timeout: float, max_output: int, env: dict | None,
             limits: tuple[int, int, int, int]) -> CommandResult:
    """Start the supervisor and collect its output; kill it on timeout."""
    full_env = command_env(cwd, env if isolation == "-" else {**_GIT_SAFE, **(env or {})})
    argv = [sys.executable or "python3", "-I", "-S", _SUPERVISOR, *(str(int(v)) for v in limits), isolation,
            command]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
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
            if not sel.get_map():  # both pipes are closed: wait for the exit itself, not for a select timeout
                try:
                    proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
                continue
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
                         (time.monotonic() - started) * 1000, isolated=isolation != "-")
