"""Security battery for the sandbox: path confinement, bounded commands isolated and not (real processes, no mocks)."""
from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.services import workspace_files
from app.services.sandbox import CommandResult, PathEscape, SandboxError, SandboxPolicy, resolve_in, run_command


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.txt").write_text("hello\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    return root


def marker() -> str:
    """A unique number to put into a command (e.g. `sleep 300.<n>`) and find its processes with pgrep -f."""
    return str(random.randint(10**8, 10**9 - 1))


def alive(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout.split()


# --- resolve_in -------------------------------------------------------------------------------------

HOSTILE_PATHS = [
    "../x", "../../etc/passwd", "a/../../x", "a/../../../../../../etc/shadow", "/etc/passwd", "//etc/passwd",
    "~/.ssh/id_rsa", "~root/.bashrc", "a\x00b", "", "   ", "C:\\x", "c:/windows", "\\etc\\passwd",
    ".git/config", ".git", "a/../.git/config", ".GIT/config", "./.git/hooks/pre-commit",
]


@pytest.mark.parametrize("rel", HOSTILE_PATHS)
def test_resolve_in_refuses_hostile_paths(ws: Path, rel: str) -> None:
    with pytest.raises(PathEscape):
        resolve_in(ws, rel)


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a\x00b", ".git/config"])
def test_file_operations_refuse_hostile_paths(ws: Path, rel: str) -> None:
    with pytest.raises(PathEscape):
        workspace_files.read_file(ws, rel)
    with pytest.raises(PathEscape):
        workspace_files.write_file(ws, rel, "x")
    assert (ws / ".git" / "config").read_text() == "[core]\n"


@pytest.mark.parametrize("rel,expected", [
    ("a/f.txt", "a/f.txt"), ("a/../a/f.txt", "a/f.txt"), ("./a//f.txt", "a/f.txt"), (".", ""),
    ("new/dir/file.txt", "new/dir/file.txt"), (".gitignore", ".gitignore"), (".github/x.yml", ".github/x.yml"),
])
def test_resolve_in_accepts_paths_inside(ws: Path, rel: str, expected: str) -> None:
    assert resolve_in(ws, rel) == Path(os.path.realpath(ws), expected)


def test_must_exist(ws: Path) -> None:
    assert resolve_in(ws, "a/f.txt", must_exist=True).is_file()
    with pytest.raises(SandboxError) as info:
        resolve_in(ws, "missing.txt", must_exist=True)
    assert not isinstance(info.value, PathEscape)


def test_symlink_to_etc_cannot_be_read_through(ws: Path) -> None:
    (ws / "etc").symlink_to("/etc")
    (ws / "passwd").symlink_to("/etc/passwd")
    for rel in ("etc/passwd", "etc", "passwd"):
        with pytest.raises(PathEscape):
            resolve_in(ws, rel)
        with pytest.raises(PathEscape):
            workspace_files.read_file(ws, rel)


def test_symlinked_directory_outside_refuses_writes(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "out").symlink_to(outside)
    for rel in ("out/new.txt", "out/deeper/new.txt"):
        with pytest.raises(PathEscape):
            workspace_files.write_file(ws, rel, "pwned")
    assert list(outside.iterdir()) == []


def test_dangling_symlink_pointing_outside_refused(ws: Path, tmp_path: Path) -> None:
    (ws / "later").symlink_to(tmp_path / "not-yet")
    with pytest.raises(PathEscape):
        workspace_files.write_file(ws, "later", "pwned")
    assert not (tmp_path / "not-yet").exists()


def test_symlink_to_git_refused_and_inside_symlink_allowed(ws: Path) -> None:
    (ws / "internals").symlink_to(ws / ".git")
    with pytest.raises(PathEscape):
        resolve_in(ws, "internals/config")
    (ws / "alias").symlink_to(ws / "a")
    assert workspace_files.read_file(ws, "alias/f.txt") == "hello\n"


def test_search_does_not_follow_symlinks_out(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("needle outside\n")
    (ws / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (ws / "a" / "in.txt").write_text("needle inside\n")
    assert workspace_files.search_text(ws, "needle") == "a/in.txt:1: needle inside"


# --- run_command: every test runs twice, isolated (namespaces) and plain (SANDBOX=off) ------------------

@pytest.fixture(params=["namespaces", "plain"])
def run(request):
    policy = SandboxPolicy(mode="strict" if request.param == "namespaces" else "off")

    def call(cwd: Path, command: str, **kwargs) -> CommandResult:
        result = run_command(cwd, command, policy=policy, **kwargs)
        assert result.isolated == (request.param == "namespaces")
        return result
    return call


def test_exit_code_and_output(run, ws: Path) -> None:
    result = run(ws, "echo out; echo err >&2; pwd; exit 7")
    assert (result.exit_code, result.stderr, result.timed_out, result.truncated) == (7, "err\n", False, False)
    assert result.stdout == f"out\n{os.path.realpath(ws)}\n"
    assert result.duration_ms > 0


def test_killed_by_signal_reports_128_plus_n(run, ws: Path) -> None:
    assert run(ws, "kill -9 $$").exit_code == 137


def test_stdin_is_dev_null_and_output_decoded_with_replacement(run, ws: Path) -> None:
    result = run(ws, "cat; printf '\\377ok'", timeout=5)
    assert result.exit_code == 0 and result.stdout == "\ufffdok"


def test_environment_is_scrubbed(run, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_SECRET_KEY", "s3cr3t")
    monkeypatch.setenv("LOOM_DATABASE_URL", "postgresql://loom:hunter2@db/loom")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000")
    result = run(ws, "env", env={"EXTRA": "1"})
    assert result.exit_code == 0
    for leaked in ("LOOM_SECRET_KEY", "s3cr3t", "LOOM_DATABASE_URL", "hunter2", "OPENAI_API_KEY"):
        assert leaked not in result.stdout
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env["HOME"] == str(ws) and env["EXTRA"] == "1" and env["LANG"] == "C.UTF-8"
    assert env["GIT_AUTHOR_NAME"] == "Loom Agent" and env["GIT_COMMITTER_EMAIL"] == "agent@loom.local"
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)


def test_python3_resolves_to_the_venv(run, ws: Path) -> None:
    result = run(ws, "command -v python3")
    assert result.stdout.strip() == os.path.join(os.path.dirname(sys.executable), "python3")


def test_absolute_paths_are_confined_and_secrets_are_absent(run, ws: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolated, a file outside the workspace (the parent's DB file) is not there at all; without isolation
    (SANDBOX=off, or auto on a machine without namespaces) it is readable by absolute path, as documented.
    Either way nothing secret comes with the environment."""
    db_file = tmp_path / "loom.db"
    db_file.write_text("rows")
    monkeypatch.setenv("LOOM_SECRET_KEY", "s3cr3t")
    result = run(ws, f"cat {db_file}; echo; env")
    assert "LOOM_SECRET_KEY" not in result.stdout and "s3cr3t" not in result.stdout
    if result.isolated:
        assert not result.stdout.startswith("rows") and f"{db_file}: No such file or directory" in result.stderr
    else:
        assert result.stdout.startswith("rows\n")


def test_output_flood_is_truncated_and_memory_bounded(run, ws: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(ws, "yes", timeout=2)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.timed_out and result.truncated and result.exit_code is None
    assert len(result.stdout) <= 16_384 + 200
    assert result.stdout.startswith("y\ny\n") and "output truncated at 16384 bytes" in result.stdout
    assert grown_kb < 64 * 1024  # `yes` wrote gigabytes in 2 s; none of it was kept


def test_large_output_that_ends_is_truncated_per_stream(run, ws: Path) -> None:
    result = run(ws, "head -c 5000000 /dev/zero | tr '\\0' a; echo fine >&2", max_output=1000)
    assert result.exit_code == 0 and not result.timed_out and result.truncated
    assert result.stdout.startswith("a" * 1000) and len(result.stdout) <= 1200
    assert result.stderr == "fine\n"


def test_timeout_kills_and_returns_quickly(run, ws: Path) -> None:
    m = marker()
    started = time.monotonic()
    result = run(ws, f"echo partial; sleep 100.{m}", timeout=1)
    assert time.monotonic() - started < 4
    assert result.timed_out and result.exit_code is None and result.stdout == "partial\n"
    assert alive(m) == []


def test_timeout_kills_background_child_ignoring_sigterm(run, ws: Path) -> None:
    m = marker()
    started = time.monotonic()
    result = run(ws, f"(trap '' TERM; sleep 300.{m}) & sleep 300.{m}", timeout=1)
    assert result.timed_out and time.monotonic() - started < 8
    assert alive(m) == []


def test_timeout_kills_a_process_that_left_the_session(run, ws: Path) -> None:
    m = marker()
    result = run(ws, f"setsid sleep 300.{m} & (setsid sleep 301.{m} &); sleep 300.{m}", timeout=1)
    assert result.timed_out
    assert alive(m) == []


def test_background_leftovers_do_not_outlive_the_command(run, ws: Path) -> None:
    m = marker()
    started = time.monotonic()
    result = run(ws, f"sleep 300.{m} & (setsid sleep 301.{m} &); echo started", timeout=30)
    assert (result.exit_code, result.stdout, result.timed_out) == (0, "started\n", False)
    assert time.monotonic() - started < 5
    assert alive(m) == []


def test_fork_bomb_is_killed_with_its_whole_group(run, ws: Path) -> None:
    m = marker()
    started = time.monotonic()
    result = run(ws, f"for i in $(seq 1 100000); do sleep 60.{m} & done", timeout=3)
    assert result.timed_out and time.monotonic() - started < 15
    assert alive(m) == []


def test_memory_limit_fails_the_command_instead_of_eating_ram(run, ws: Path) -> None:
    result = run(ws, 'python3 -c "x = bytearray(4*1024**3)"', memory_mb=512, timeout=30)
    assert result.exit_code not in (0, None) and "MemoryError" in result.stderr


def test_file_size_limit(run, ws: Path) -> None:
    result = run(ws, "head -c 3000000 /dev/zero > big", max_file_mb=1, timeout=30)
    assert result.exit_code != 0
    assert (ws / "big").stat().st_size <= 1024 * 1024


def test_cpu_limit_stops_a_busy_loop(run, ws: Path) -> None:
    result = run(ws, 'python3 -c "while True: pass"', cpu_seconds=1, timeout=30)
    assert not result.timed_out and result.exit_code not in (0, None)
    assert result.duration_ms < 10_000


def test_commands_in_parallel_threads(run, ws: Path) -> None:
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = run(ws, f"sleep 0.3; echo {i}").stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: f"{i}\n" for i in range(6)}


@pytest.mark.parametrize("kwargs", [{"command": "echo a\x00b"}, {"command": "true", "timeout": 0},
                                    {"command": "true", "env": {"A=B": "x"}}])
def test_invalid_arguments_refused(ws: Path, kwargs: dict) -> None:
    with pytest.raises(SandboxError):
        run_command(ws, **kwargs)


def test_missing_working_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError):
        run_command(tmp_path / "nope", "true")
