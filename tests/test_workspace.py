"""Project repositories, bead worktrees, file operations and git actions, against real git in tmp_path."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from app.services import workspace, workspace_files
from app.services.workspace import WorkspaceError

PRIVATE_KEY = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1\n-----END RSA PRIVATE KEY-----\n"
OPENAI_KEY = "sk-" + "proj-4f9Qx2Lk8Zp1Vb7Nc3Rt6Yw0"


def git(path: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-C", str(path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def branch_of(path: Path) -> str:
    return git(path, "rev-parse", "--abbrev-ref", "HEAD").strip()


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def repo(data_dir: Path) -> Path:
    return workspace.ensure_project_repo(data_dir, 1, None)


@pytest.fixture()
def wt(repo: Path, data_dir: Path) -> Path:
    return workspace.ensure_worktree(data_dir, 1, 7)


@pytest.fixture()
def source_repo(tmp_path: Path) -> Path:
    src = tmp_path / "source"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    (src / "app.py").write_text("print('hi')\n")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "first")
    git(src, "branch", "develop")
    return src


# --- repositories and worktrees --------------------------------------------------------------------

def test_new_repo_has_default_branch_and_initial_commit(data_dir: Path) -> None:
    repo = workspace.ensure_project_repo(data_dir, 1, None)
    assert repo == workspace.project_dir(data_dir, 1) / "repo" == data_dir / "projects" / "1" / "repo"
    assert branch_of(repo) == "main"
    assert (repo / "README.md").read_text() == "# Project 1\n"
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
    assert git(repo, "config", "--local", "user.email").strip() == "loom@localhost"
    assert workspace.ensure_project_repo(data_dir, 1, None) == repo
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_new_repo_with_other_default_branch(data_dir: Path) -> None:
    assert branch_of(workspace.ensure_project_repo(data_dir, 2, None, default_branch="trunk")) == "trunk"


@pytest.mark.parametrize("bad", ["-x", "a..b", "has space", "end.lock"])
def test_invalid_default_branch_refused(data_dir: Path, bad: str) -> None:
    with pytest.raises(WorkspaceError):
        workspace.ensure_project_repo(data_dir, 1, None, default_branch=bad)


def test_clone_local_repo_is_idempotent(data_dir: Path, source_repo: Path) -> None:
    repo = workspace.ensure_project_repo(data_dir, 3, str(source_repo))
    assert (repo / "app.py").read_text() == "print('hi')\n" and branch_of(repo) == "main"
    head = git(repo, "rev-parse", "HEAD")
    assert workspace.ensure_project_repo(data_dir, 3, str(source_repo)) == repo
    assert git(repo, "rev-parse", "HEAD") == head
    assert sorted(p.name for p in workspace.project_dir(data_dir, 3).iterdir()) == [".lock", "repo"]


def test_clone_checks_out_remote_or_new_default_branch(data_dir: Path, source_repo: Path) -> None:
    develop = workspace.ensure_project_repo(data_dir, 4, str(source_repo), default_branch="develop")
    assert branch_of(develop) == "develop"
    release = workspace.ensure_project_repo(data_dir, 5, str(source_repo), default_branch="release")
    assert branch_of(release) == "release" and (release / "app.py").exists()


def test_clone_of_empty_repo_gets_initial_commit(data_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    repo = workspace.ensure_project_repo(data_dir, 6, str(empty))
    assert branch_of(repo) == "main" and (repo / "README.md").exists()


@pytest.mark.parametrize("source", ["relative/path", "--upload-pack=touch /tmp/x", "/does/not/exist",
                                    "ext::sh -c touch% /tmp/pwned"])
def test_bad_git_repo_refused_and_nothing_left(data_dir: Path, source: str) -> None:
    with pytest.raises(WorkspaceError):
        workspace.ensure_project_repo(data_dir, 8, source)
    assert sorted(p.name for p in workspace.project_dir(data_dir, 8).iterdir()) == [".lock"]


def test_clone_failure_is_a_clean_error(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-repo").mkdir()
    with pytest.raises(WorkspaceError) as info:
        workspace.ensure_project_repo(data_dir, 9, str(tmp_path / "not-a-repo"))
    assert str(info.value).startswith("git clone failed:") and "Traceback" not in str(info.value)


# --- file operations --------------------------------------------------------------------------------

def test_write_and_read(wt: Path) -> None:
    assert workspace_files.write_file(wt, "src/pkg/mod.py", "x = 1\n") == "wrote 6 bytes to src/pkg/mod.py"
    assert workspace_files.read_file(wt, "src/pkg/mod.py") == "x = 1\n"
    assert not [p for p in (wt / "src" / "pkg").iterdir() if p.name != "mod.py"]  # no temp files left


def test_write_keeps_the_mode_of_an_existing_file(wt: Path) -> None:
    (wt / "run.sh").write_text("#!/bin/sh\n")
    (wt / "run.sh").chmod(0o755)
    workspace_files.write_file(wt, "run.sh", "#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(os.stat(wt / "run.sh").st_mode) == 0o755


def test_write_limits(wt: Path) -> None:
    with pytest.raises(WorkspaceError):
        workspace_files.write_file(wt, "big.txt", "x" * 11, max_bytes=10)
    with pytest.raises(WorkspaceError):
        workspace_files.write_file(wt, ".", "x")


def test_read_truncates_and_refuses_directories_and_binaries(wt: Path) -> None:
    workspace_files.write_file(wt, "long.txt", "a" * 100)
    assert (workspace_files.read_file(wt, "long.txt", max_bytes=10)
            == "a" * 10 + "\n[... truncated at 10 of 100 bytes ...]")
    (wt / "blob.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    with pytest.raises(WorkspaceError, match="binary"):
        workspace_files.read_file(wt, "blob.bin")
    (wt / "folder").mkdir()
    with pytest.raises(WorkspaceError, match="directory"):
        workspace_files.read_file(wt, "folder")


def test_read_of_a_fifo_is_refused_instead_of_blocking(wt: Path) -> None:
    os.mkfifo(wt / "pipe")
    with pytest.raises(WorkspaceError, match="not a regular file"):
        workspace_files.read_file(wt, "pipe")
    assert workspace_files.search_text(wt, "x") == "no matches for 'x'"


def test_edit_file(wt: Path) -> None:
    workspace_files.write_file(wt, "m.py", "a = 1\nb = 2\nb = 2\n")
    assert workspace_files.edit_file(wt, "m.py", "a = 1", "a = 10") == "edited m.py: replaced 1 occurrence"
    with pytest.raises(WorkspaceError, match="found 0 times"):
        workspace_files.edit_file(wt, "m.py", "zzz", "y")
    with pytest.raises(WorkspaceError, match="found 2 times"):
        workspace_files.edit_file(wt, "m.py", "b = 2", "b = 3")
    assert workspace_files.read_file(wt, "m.py") == "a = 10\nb = 2\nb = 2\n"


def test_list_files(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for rel in ("b.txt", "a/z.txt", "a/deep/x.txt", ".git/config", "a/.git/HEAD"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    assert workspace_files.list_files(root) == "a/\n  deep/\n  z.txt\nb.txt"
    assert workspace_files.list_files(root, "a", depth=3) == "deep/\n  x.txt\nz.txt"
    assert workspace_files.list_files(root, max_entries=2) == (
        "a/\n  deep/\n[... stopped at 2 entries; list a subfolder or lower depth ...]")
    assert workspace_files.list_files(root, "a/deep/..") == "deep/\n  x.txt\nz.txt"


def test_search_text_is_literal_and_skips_git_and_binaries(wt: Path) -> None:
    workspace_files.write_file(wt, "src/a.py", "x = f(a.b(1))\ny = axb(1)\n")
    workspace_files.write_file(wt, "docs/n.md", "see a.b( here\n")
    (wt / "bin.dat").write_bytes(b"\x00a.b(")
    assert workspace_files.search_text(wt, "a.b(") == "docs/n.md:1: see a.b( here\nsrc/a.py:1: x = f(a.b(1))"
    assert workspace_files.search_text(wt, "a.b(", "src") == "src/a.py:1: x = f(a.b(1))"
    assert workspace_files.search_text(wt, "gitdir") == "no matches for 'gitdir'"  # the worktree's .git file
    workspace_files.write_file(wt, "many.txt", "hit\n" * 50)
    assert workspace_files.search_text(wt, "hit", max_matches=3).endswith("[... stopped at 3 matches ...]")


# --- git actions ------------------------------------------------------------------------------------

def test_status_and_diff_include_new_files_without_touching_the_index(wt: Path) -> None:
    workspace_files.write_file(wt, "new.txt", "brand new\n")
    workspace_files.edit_file(wt, "README.md", "# Project 1", "# Project one")
    status = workspace_files.git_status(wt)
    assert status.startswith("## bead/7") and "?? new.txt" in status and " M README.md" in status
    diff = workspace_files.git_diff(wt)
    assert "+brand new" in diff and "-# Project 1" in diff and "+# Project one" in diff
    assert "?? new.txt" in workspace_files.git_status(wt)  # the real index is untouched
    assert workspace_files.git_diff(wt, max_bytes=50).endswith("[... diff truncated at 50 bytes ...]")


def test_diff_of_clean_worktree(wt: Path) -> None:
    assert workspace_files.git_diff(wt) == "(no changes)"


def test_commit_with_trailers_and_idempotent_nothing_to_commit(wt: Path) -> None:
    workspace_files.write_file(wt, "feature.py", "def f():\n    return 1\n")
    out = workspace_files.git_commit(wt, "Add feature", {"Bead": "7", "Agent": "alice"})
    assert out == f"committed {git(wt, 'rev-parse', '--short', 'HEAD').strip()} on bead/7"
    assert git(wt, "log", "-1", "--format=%B") == "Add feature\n\nBead: 7\nAgent: alice\n\n"
    assert git(wt, "log", "-1", "--format=%(trailers:key=Bead,valueonly)").strip() == "7"
    head = git(wt, "rev-parse", "HEAD")
    again = workspace_files.git_commit(wt, "Add feature", {"Bead": "7", "Agent": "alice"})
    assert again.startswith("nothing to commit") and git(wt, "rev-parse", "HEAD") == head


def test_commit_on_a_detached_head_says_so(wt: Path) -> None:
    git(wt, "checkout", "-q", "--detach")
    workspace_files.write_file(wt, "detached.txt", "x\n")
    out = workspace_files.git_commit(wt, "On no branch", {})
    assert out == f"committed {git(wt, 'rev-parse', '--short', 'HEAD').strip()} on HEAD"
    again = workspace_files.git_commit(wt, "again", {})
    assert again == out.replace("committed", "nothing to commit: no changes since", 1)


@pytest.mark.parametrize("name,content,kind", [
    ("id_rsa", PRIVATE_KEY, "private key"),
    ("config.py", f'OPENAI = "{OPENAI_KEY}"\n', "OpenAI-style API key"),
    ("aws.env", "AWS_ACCESS_KEY_ID=AKIA" + "IOSFODNN7EXAMPLE\n", "AWS access key"),
    ("ci.yml", "token: ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8\n", "GitHub token"),
    ("slack.txt", "xoxb-" + "123456789012-abcdefghij\n", "Slack token"),
    ("settings.py", 'db_password = "' + "correct-horse-battery-staple" + '"\n', "generic secret assignment"),
])
def test_commit_refuses_secrets_and_unstages(wt: Path, name: str, content: str, kind: str) -> None:
    head = git(wt, "rev-parse", "HEAD")
    workspace_files.write_file(wt, "ok.txt", "fine\n")
    workspace_files.write_file(wt, name, content)
    with pytest.raises(WorkspaceError) as info:
        workspace_files.git_commit(wt, "oops", {"Bead": "7"})
    assert name in str(info.value) and kind in str(info.value)
    assert git(wt, "rev-parse", "HEAD") == head
    assert git(wt, "diff", "--cached", "--name-only") == ""  # unstaged
    assert f"?? {name}" in workspace_files.git_status(wt) and (wt / name).read_text() == content


def test_secret_added_to_a_tracked_file_is_refused(wt: Path) -> None:
    workspace_files.write_file(wt, "README.md", f"# Project 1\n\nkey = {OPENAI_KEY}\n")
    with pytest.raises(WorkspaceError, match="README.md line 3 looks like a OpenAI-style API key"):
        workspace_files.git_commit(wt, "docs", {})
    assert " M README.md" in workspace_files.git_status(wt)


def test_look_alikes_are_not_secrets(wt: Path) -> None:
    workspace_files.write_file(wt, "notes.md", "risk-assessment-of-the-whole-project-plan\n"
                         "password = os.environ['DB_PASSWORD']\ntoken: ${{ secrets.TOKEN }}\n")
    assert workspace_files.git_commit(wt, "notes", {}).startswith("committed ")


def test_commit_message_and_trailers_validated(wt: Path) -> None:
    workspace_files.write_file(wt, "x.txt", "x")
    with pytest.raises(WorkspaceError):
        workspace_files.git_commit(wt, "   ", {})
    with pytest.raises(WorkspaceError):
        workspace_files.git_commit(wt, "msg", {"Bad Key": "v"})
    with pytest.raises(WorkspaceError):
        workspace_files.git_commit(wt, "msg", {"Bead": "1\nAgent: forged"})


def test_merge_to_default_direct(repo: Path, wt: Path, data_dir: Path) -> None:
    workspace_files.write_file(wt, "feature.txt", "feature\n")
    workspace_files.git_commit(wt, "feature", {"Bead": "7"})
    out = workspace.merge_to_default(data_dir, 1, 7)
    sha = git(repo, "rev-parse", "--short", "main").strip()
    assert out == f"merged bead/7 into main as {sha}"
    assert git(repo, "log", "-1", "--format=%s%n%P", "main").splitlines()[0] == "Merge bead 7"
    assert len(git(repo, "log", "-1", "--format=%P", "main").split()) == 2
    assert (repo / "feature.txt").read_text() == "feature\n" and branch_of(repo) == "main"
    assert workspace.merge_to_default(data_dir, 1, 7).startswith("bead/7 is already merged")


def test_conflicting_merge_refused_and_default_branch_untouched(repo: Path, data_dir: Path) -> None:
    for bead, text in ((1, "# one\n"), (2, "# two\n")):
        path = workspace.ensure_worktree(data_dir, 1, bead)
        workspace_files.write_file(path, "README.md", text)
        workspace_files.git_commit(path, f"bead {bead}", {})
    workspace.merge_to_default(data_dir, 1, 1)
    before = git(repo, "rev-parse", "main")
    with pytest.raises(WorkspaceError, match=r"^merge conflict: .*README\.md"):
        workspace.merge_to_default(data_dir, 1, 2)
    assert git(repo, "rev-parse", "main") == before and branch_of(repo) == "main"
    assert git(repo, "status", "--porcelain") == "" and (repo / "README.md").read_text() == "# one\n"
    assert not (repo / ".git" / "MERGE_HEAD").exists()


def test_merge_of_unknown_bead_refused(repo: Path, data_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        workspace.merge_to_default(data_dir, 1, 404)
