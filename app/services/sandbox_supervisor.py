"""The supervisor of one sandboxed command: a process of its own (`python -I -S` this file), started by run_command.

Arguments: memory_mb cpu_seconds max_file_mb max_processes isolation command, where isolation is "-" (no
namespaces) or "network,uid,tmp_mb" (see sandbox_isolation). Standard library only.

Without namespaces the supervisor sets the rlimits on itself, becomes a child subreaper, runs the command
in a session of its own and, on SIGTERM (the timeout) or when the command exits, sends SIGTERM to the
command's group and every descendant, then SIGKILL every 0.2 s from 2 s on, until none is left. With
namespaces the same happens inside a PID namespace, whose init ends every leftover process when it exits.
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def descendants(root: int) -> list[int]:
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


def user_tasks(uid: int) -> int:
    """Processes and threads owned by `uid` now, system-wide: what RLIMIT_NPROC counts."""
    count = 0
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                count += len(os.listdir(f"/proc/{name}/task"))
        except OSError:
            continue
    return count


def set_limits(memory_mb: int, cpu_seconds: int, max_file_mb: int, nproc: int) -> None:
    """Hard = soft, clamped to the current hard limits; a value <= 0 leaves that limit unchanged."""
    for res, value in ((resource.RLIMIT_AS, memory_mb * 1024 * 1024), (resource.RLIMIT_CPU, cpu_seconds),
                       (resource.RLIMIT_FSIZE, max_file_mb * 1024 * 1024),
                       (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_NOFILE, 1024)):
        if value <= 0:
            continue
        _, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))


def _supervise_plain(limits: tuple[int, int, int, int], command: str) -> int:
    """Spawn the command, reap every descendant, kill the tree on SIGTERM or when the command ends."""
    memory_mb, cpu_seconds, max_file_mb, max_processes = limits
    state = {"main": 0, "stop": False}

    def kill_tree(sig: int) -> None:
        if state["main"]:
            try:
                os.killpg(state["main"], sig)  # atomic for the whole group, even mid-fork
            except OSError:
                pass
        for pid in descendants(os.getpid()):
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
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        # RLIMIT_NPROC counts every task of the uid (a desktop has thousands): headroom over the count now.
        set_limits(memory_mb, cpu_seconds, max_file_mb,
                   user_tasks(os.getuid()) + max_processes if max_processes > 0 else 0)
        if state["stop"]:
            return 143
        state["main"] = os.posix_spawnp("bash", ["bash", "-c", command], os.environ, setsid=True)
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


def main(argv: list[str], isolation: object = None, root_fs: object = None) -> int:
    """The supervisor's entry; `isolation` and `root_fs` are the sandbox_isolation and sandbox_root modules."""
    limits = tuple(int(a) for a in argv[:4])
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the worker died: clean up
    if argv[4] == "-":
        return _supervise_plain(limits, argv[5])  # type: ignore[arg-type]
    network, uid, tmp_mb = argv[4].split(",")
    memory_mb, cpu_seconds, max_file_mb, max_processes = limits
    as_uid = int(uid) if os.getuid() == 0 else os.getuid()
    nproc = user_tasks(as_uid) + max_processes if max_processes > 0 else 0  # counted on the host, before unshare
    workspace = os.getcwd()
    try:
        steps = root_fs.plan(workspace, network)
        return isolation.supervise(workspace, argv[5], network, int(uid),
                                   lambda: root_fs.build_root(steps, int(tmp_mb)),
                                   lambda: set_limits(memory_mb, cpu_seconds, max_file_mb, nproc))
    except OSError as exc:
        print(f"sandbox: cannot isolate the command: {exc}", file=sys.stderr)
        return isolation.SETUP_FAILED


if __name__ == "__main__":
    # `python -I -S` keeps this folder off sys.path (nothing in the workspace can shadow a module); the two
    # siblings needed, stdlib-only themselves, are appended after the standard library.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import sandbox_isolation  # noqa: E402
    import sandbox_root  # noqa: E402

    sys.exit(main(sys.argv[1:], sandbox_isolation, sandbox_root))
