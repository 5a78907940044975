"""The root file system of a sandboxed command: which host paths it sees, built in a tmpfs and pivoted into.

Standard library only: it runs inside the supervisor (see sandbox_supervisor and sandbox_isolation). The new
root holds /usr, /bin, /sbin, /lib*, /etc (MASKED hidden) and the Python installation and venv, all read-only;
the workspace read-write at its own absolute path, its `.git` and the repository's git dir read-only; a fresh
size-limited /tmp, a minimal /dev and a /proc of the command's PID namespace. Nothing else of the host.
"""
from __future__ import annotations

import ctypes
import errno
import glob
import os
import platform
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
_ST_TO_MS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME,
             os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
MASKED = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssl/private",
          "/etc/security/opasswd", "/etc/ssh/ssh_host_*_key")
HOST_NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts")  # may be mounts of their own (containers)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_STAGING = ("/run", "/srv", "/media", "/opt", "/mnt", "/var")  # one of these is hidden by the new root's tmpfs

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(ret: int, what: str) -> None:
    """Raise OSError("what: reason") when a libc call failed."""
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def _bind(source: str, target: str, *, readonly: bool, flags: int = MS_NOSUID | MS_NODEV) -> None:
    """Bind `source` (not its submounts) on `target`, then remount it with `flags` (+ read-only). Flags the
    source mount already has are kept: a user namespace may not clear them (EPERM)."""
    _mount(source, target, None, MS_BIND)
    kept = os.statvfs(target).f_flag
    flags |= sum(ms for st, ms in _ST_TO_MS.items() if kept & st)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | flags | (MS_RDONLY if readonly else 0))


def _pivot_root(new_root: str) -> None:
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown system call number on {platform.machine()}")
    os.chdir(new_root)
    _check(_libc.syscall(ctypes.c_long(number), b".", b"."), "pivot_root")  # the old root is stacked on "."
    _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")


def _covered(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _python_dirs() -> list[str]:
    """The interpreter, its standard library and the venv (logical and real paths), so `python3` works."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    if sys.executable:
        bin_dir = os.path.dirname(sys.executable)
        candidates += [bin_dir, os.path.dirname(os.path.realpath(sys.executable))]
        # Under -S, sys.prefix is not the venv's (site sets that): find the venv as site does.
        candidates += [d for d in (bin_dir, os.path.dirname(bin_dir)) if os.path.isfile(f"{d}/pyvenv.cfg")]
    found: list[str] = []
    for path in candidates + [os.path.realpath(p) for p in candidates]:
        path = os.path.abspath(path)
        if path != "/" and os.path.isdir(path) and not _covered(path, found + list(SYSTEM_DIRS)):
            found = [p for p in found if not _covered(p, [path])] + [path]
    return found


def git_dirs(workspace: str) -> list[str]:
    """The git dirs a worktree's `.git` file leads to (its admin dir and the repository's common dir)."""
    dotgit = os.path.join(workspace, ".git")
    if not os.path.isfile(dotgit):
        return []
    with open(dotgit, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip()
    if not first.startswith("gitdir:"):
        return []
    admin = os.path.realpath(os.path.join(workspace, first[len("gitdir:"):].strip()))
    common = admin
    if os.path.isfile(os.path.join(admin, "commondir")):
        with open(os.path.join(admin, "commondir"), encoding="utf-8", errors="replace") as fh:
            common = os.path.realpath(os.path.join(admin, fh.readline().strip()))
    dirs = [common] if os.path.isdir(os.path.join(common, "objects")) else []
    if os.path.isdir(admin) and not _covered(admin, dirs):
        dirs.append(admin)
    return [d for d in dirs if not _covered(d, [workspace])]


def plan(workspace: str, network: str) -> list[tuple[str, str, str]]:
    """The new root as (kind, source, target) steps, parents before children."""
    steps: list[tuple[str, str, str]] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            steps.append(("symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            steps.append(("ro", path, path))
    python = _python_dirs()
    in_tmp = [path for path in python if _covered(path, ["/tmp"])]  # a checkout under /tmp: after the tmpfs
    steps += [("ro", path, path) for path in python if path not in in_tmp]
    steps += [("tmp", "", "/tmp")] + [("ro", path, path) for path in in_tmp]
    steps += [("dev", "", "/dev"), ("proc", "", "/proc"), ("rw", workspace, workspace)]
    if os.path.lexists(os.path.join(workspace, ".git")) and not os.path.islink(os.path.join(workspace, ".git")):
        steps.append(("ro", os.path.join(workspace, ".git"), os.path.join(workspace, ".git")))
    steps += [("ro", path, path) for path in git_dirs(workspace)]
    steps += [("mask", "", path) for pattern in MASKED for path in sorted(glob.glob(pattern))]
    if network == "host":
        steps += [("ro", path, path) for path in HOST_NETWORK_FILES
                  if os.path.isfile(path) and not os.path.islink(path)]
    return steps


def _staging(steps: list[tuple[str, str, str]]) -> str:
    sources = [s for _, s, _ in steps if s.startswith("/")]
    for candidate in _STAGING:
        if os.path.isdir(candidate) and not os.path.islink(candidate) and not any(
                _covered(s, [candidate]) for s in sources):
            return candidate
    raise OSError(errno.ENOENT, "no directory to build the new root in")


def _mountpoint(stage: str, kind: str, source: str, target: str) -> str:
    """Create what `target` is mounted on inside the stage: a folder, or an empty file for a file."""
    path = stage + target
    if kind == "mask" or os.path.lexists(path) and not os.path.isdir(source or "/"):
        return path
    if not source or os.path.isdir(source):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()  # noqa: SIM115 (an empty file to mount a file on)
    return path


def _make_dev(path: str) -> None:
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{path}/{name}", "a").close()  # noqa: SIM115
            _mount(f"/dev/{name}", f"{path}/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{path}/{name}")
    os.mkdir(f"{path}/shm")
    _mount("tmpfs", f"{path}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
    _mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def build_root(steps: list[tuple[str, str, str]], tmp_mb: int) -> None:
    """Make every mount of this namespace private, build the new root and pivot into it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.umask(0o022)  # the folders made for mount points must be traversable by the command's uid
    stage = _staging(steps)
    _mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    for kind, source, target in steps:
        if kind == "symlink":
            os.symlink(source, stage + target)
            continue
        path = _mountpoint(stage, kind, source, target)
        if kind in ("ro", "rw"):
            _bind(source, path, readonly=kind == "ro")
        elif kind == "mask":
            if os.path.isdir(path):
                _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=4k")
            else:
                _bind("/dev/null", path, readonly=True)
        elif kind == "tmp":
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={max(1, tmp_mb)}m")
        elif kind == "dev":
            _make_dev(path)
        elif kind == "proc":
            _mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _pivot_root(stage)
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
