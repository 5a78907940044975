"""Linux namespaces for one sandboxed command: its own mount, PID, IPC, UTS and network, and no privileges.

Standard library only: it runs inside the supervisor process (sandbox_supervisor, `python -I -S`). `supervise`
unshares mount, PID, IPC, UTS and (unless the network is "host") network namespaces, plus a user namespace
mapping only the worker's own ids when the worker is not root, and forks the namespace's init (PID 1). The init
builds the new root (sandbox_root), brings loopback up, sets no_new_privs, then runs `bash -c` (as the sandbox
uid when the worker is root) and reaps everything; when it ends, the kernel kills whatever is left in the PID
namespace.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
from collections.abc import Callable
from fcntl import ioctl

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38
SETUP_FAILED = 125  # the exit status when the sandbox could not be built (the command did not run)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sh", ioctl(sock, 0x8913, struct.pack("16sh22x", b"lo", 0))[:18])[1]  # SIOCGIFFLAGS
        ioctl(sock, 0x8914, struct.pack("16sh22x", b"lo", flags | 0x1 | 0x40))  # SIOCSIFFLAGS: IFF_UP|IFF_RUNNING


def own_workspace(root: str, uid: int, gid: int) -> None:
    """Hand the workspace to the sandbox uid (the worker's own git accepts it with safe.directory=*). Symlinks
    are not followed, `.git` stays as it is, a file with several hard links (it may live outside) is left, and
    no set-uid/gid bit a command made survives (the workspace is nosuid only inside the sandbox)."""
    def visit(path: str) -> None:
        with os.scandir(path) as entries:
            for entry in entries:
                if path == root and entry.name == ".git":
                    continue
                st = entry.stat(follow_symlinks=False)
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and st.st_nlink != 1:
                    continue
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.chown(entry.path, uid, gid, follow_symlinks=False)  # clears set-uid/gid bits too
                elif st.st_mode & 0o6000 and not is_dir and not entry.is_symlink():
                    os.chmod(entry.path, st.st_mode & 0o1777)
                if is_dir:
                    visit(entry.path)

    if os.stat(root).st_uid != uid or os.stat(root).st_gid != gid:
        os.chown(root, uid, gid)
    visit(root)


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def supervise(workspace: str, command: str, network: str, uid: int, build_root: Callable[[], None],
              apply_limits: Callable[[], None]) -> int:
    """Run `command` isolated; return its exit status as a shell reports it (SETUP_FAILED when not built).
    `build_root` makes the new root and pivots into it (in init); `apply_limits` sets the command's rlimits."""
    as_root = os.getuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (0 if network == "host" else CLONE_NEWNET)
    if as_root:
        own_workspace(workspace, uid, uid)
        _check(_libc.unshare(flags), "unshare")
    else:  # an unprivileged user namespace, mapping only our own ids: the command keeps no capability
        real_uid, real_gid = os.getuid(), os.getgid()
        _check(_libc.unshare(flags | CLONE_NEWUSER), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{real_uid} {real_uid} 1")
        _write("/proc/self/gid_map", f"{real_gid} {real_gid} 1")
    state = {"init": 0, "stop": False}

    def forward(_signum: int, _frame: object) -> None:
        state["stop"] = True
        if state["init"]:
            os.kill(state["init"], signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # until init has its own handler
    pid = os.fork()
    if pid == 0:
        code = SETUP_FAILED
        try:
            code = _init(workspace, command, build_root, network, uid if as_root else None, apply_limits)
        finally:
            os._exit(code)  # never return into the supervisor's code from this forked child
    state["init"] = pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if state["stop"]:
        os.kill(pid, signal.SIGTERM)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return code if code >= 0 else 128 - code


def _init(workspace: str, command: str, build_root: Callable[[], None], network: str, uid: int | None,
          apply_limits: Callable[[], None]) -> int:
    """PID 1 of the new namespace: build the root, start the command unprivileged, reap, then end it all."""
    state = {"main": 0, "status": 0, "stopping": False}

    def stop(_signum: int = 0, _frame: object = None) -> None:
        if not state["stopping"]:
            state["stopping"] = True
            try:
                os.kill(-1, signal.SIGTERM)  # every process of the namespace but init itself
            except OSError:
                pass
            signal.setitimer(signal.ITIMER_REAL, 2.0)  # then init exits: the kernel SIGKILLs the rest

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, lambda _s, _f: os._exit(state["status"]))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the supervisor died: the namespace goes too
    try:
        build_root()
        if network != "host":
            _loopback_up()
        _check(_libc.sethostname(b"sandbox", 7), "sethostname")
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # the command may not ptrace init or read its /proc files
    except Exception as exc:  # noqa: BLE001 (any failure to build the sandbox is reported, never run unconfined)
        os.write(2, f"sandbox: cannot isolate the command: {exc}\n".encode())
        return SETUP_FAILED
    if state["stopping"]:
        return 143
    state["main"] = os.fork()
    if state["main"] == 0:
        try:
            for signum in (signal.SIGTERM, signal.SIGALRM):
                signal.signal(signum, signal.SIG_DFL)  # init's handlers are not the command's
            os.setsid()
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            apply_limits()
            os.chdir(workspace)
            os.execvpe("bash", ["bash", "-c", command], dict(os.environ))
        except BaseException as exc:  # noqa: BLE001 (report anything, then leave this forked child)
            os.write(2, f"sandbox: cannot start the command: {exc}\n".encode())
        os._exit(127)
    while True:
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            return state["status"]
        if pid == state["main"]:
            code = os.waitstatus_to_exitcode(wstatus)
            state["status"] = code if code >= 0 else 128 - code
            stop()
