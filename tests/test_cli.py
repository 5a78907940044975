"""The `loom` command line end to end: CliRunner against the live server (real web app, real database)."""
from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from app.cli import cli
from tests.cli_helpers import Loom, as_json, failed, ok, table
from tests.conftest import unique


@pytest.fixture()
def project_id(http) -> int:
    response = http.post("/projects", json={"name": unique("cli-proj")})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def make_bead(http: httpx.Client, project_id: int, title: str, **fields) -> int:
    response = http.post("/beads", json={"project_id": project_id, "title": title, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def ready_ids(loom: Loom, project_id: int) -> set[int]:
    page = as_json(loom("-o", "json", "bead", "ready", "--project", str(project_id), "--limit", "500"))
    return {item["id"] for item in page["items"]}


# --------------------------------------------------------------------------- offline behaviour

def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*prefix, name))


def test_every_command_has_help(tmp_path):
    paths = list(_all_commands(cli))
    assert {("bead", "dep", "add"), ("bead", "dep", "rm"), ("provider", "check"), ("status",)} <= set(paths)
    for path in [(), *paths]:
        result = CliRunner().invoke(cli, [*path, "--help"], env={"LOOM_CONFIG_DIR": str(tmp_path)})
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.stdout


def test_usage_errors_keep_exit_status_2(loom):
    assert loom("bead", "create", "no project given").exit_code == 2
    bad_priority = loom("bead", "list", "--priority", "P7")
    assert bad_priority.exit_code == 2
    assert "P0-P3" in bad_priority.stderr
    assert loom("-o", "yaml", "project", "list").exit_code == 2


def test_unreachable_server_is_one_clean_line(loom):
    result = loom("project", "list", server="http://127.0.0.1:9")
    assert "cannot reach Loom at http://127.0.0.1:9" in failed(result)
    flag = loom("--server", "http://127.0.0.1:9", "status")
    assert "cannot reach Loom at http://127.0.0.1:9" in failed(flag)


# --------------------------------------------------------------------------- authentication

def test_login_saves_a_private_token_and_logout_forgets_it(loom, live_server, tmp_path):
    result = loom("login", "--username", live_server.admin_username, "--password", live_server.admin_password,
                  key=None)
    assert f"Logged in as {live_server.admin_username} (expires " in ok(result)
    path = tmp_path / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())["servers"][live_server.url]
    me = httpx.get(f"{live_server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {saved['token']}"})
    assert me.status_code == 200 and me.json()["username"] == live_server.admin_username

    assert "total" in as_json(loom("-o", "json", "project", "list", key=None))  # the saved token is used

    assert f"Logged out of {live_server.url}" in ok(loom("logout", key=None))
    assert live_server.url not in json.loads(path.read_text())["servers"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "`loom login`" in failed(loom("project", "list", key=None))


def test_login_prompts_for_missing_values(loom, live_server, tmp_path):
    result = loom("login", key=None, stdin=f"{live_server.admin_username}\n{live_server.admin_password}\n")
    assert "Logged in as" in ok(result)
    assert live_server.admin_password not in result.stdout  # the password prompt does not echo
    assert (tmp_path / "credentials.json").exists()


def test_wrong_password_shows_the_server_message_and_saves_nothing(loom, live_server, tmp_path):
    result = loom("login", "--username", live_server.admin_username, "--password", "wrong-password", key=None)
    assert "wrong username or password" in failed(result)
    assert not (tmp_path / "credentials.json").exists()


def test_without_login_or_with_a_bad_key_commands_point_to_loom_login(loom):
    assert "`loom login`" in failed(loom("bead", "list", key=None))
    assert "LOOM_API_KEY" in failed(loom("agent", "list", key="not-a-real-token"))


# --------------------------------------------------------------------------- projects

def test_project_create_list_show(loom, http):
    name = unique("cli-project")
    out = ok(loom("project", "create", name, "--description", "made by the CLI test", "--git-strategy", "direct",
                  "--default-branch", "trunk"))
    assert out.startswith("Created project ") and name in out
    project_id = int(out.split()[2].rstrip(":"))
    stored = http.get(f"/projects/{project_id}").json()
    assert (stored["name"], stored["description"], stored["git_strategy"], stored["default_branch"]) == \
        (name, "made by the CLI test", "direct", "trunk")

    shown = ok(loom("project", "show", str(project_id)))
    assert f"name: {name}" in shown.splitlines()
    assert "git_strategy: direct" in shown.splitlines()
    assert as_json(loom("-o", "json", "project", "show", str(project_id))) == stored

    total = http.get("/projects").json()["total"]
    newest = ("--offset", str(total - 1))  # the session's server is shared: look at the last page only
    page = as_json(loom("-o", "json", "project", "list", *newest))
    assert page["total"] == total
    assert [p["name"] for p in page["items"]] == [name]

    rows = table(ok(loom("project", "list", *newest)))
    assert rows[0] == ["ID", "NAME", "STRATEGY", "REPO"]
    assert [str(project_id), name, "direct", "(local)"] in rows

    ok(loom("project", "create", unique("cli-project")))  # at least two exist, so one page of 1 is partial
    footer = ok(loom("project", "list", "--limit", "1")).splitlines()[-1]
    assert footer == f"1 of {http.get('/projects').json()['total']} shown"


def test_project_errors_carry_the_field(loom):
    name = unique("cli-dup")
    ok(loom("project", "create", name))
    assert "already exists (field: name)" in failed(loom("project", "create", name))
    assert "(field: git_repo)" in failed(loom("project", "create", unique("cli-bad"), "--git-repo", "relative/x"))
    assert "not found" in failed(loom("project", "show", "2147483647"))


# --------------------------------------------------------------------------- beads

def test_bead_create_with_tags_and_blockers_then_show_and_filter(loom, http, project_id):
    blocker = make_bead(http, project_id, "the blocker", type="bug", priority=1)
    tag = unique("tag")
    created = as_json(loom("-o", "json", "bead", "create", "--project", str(project_id), "needs the blocker",
                           "--priority", "P0", "--type", "feature", "--tag", tag, "--tag", "cli",
                           "--blocked-by", str(blocker), "--description", "body text",
                           "--acceptance", "true"))
    stored = http.get(f"/beads/{created['id']}").json()
    assert stored == created
    assert (stored["priority"], stored["type"], stored["acceptance"]) == (0, "feature", "true")
    assert sorted(stored["tags"]) == sorted([tag, "cli"])
    assert stored["blocked_by"] == [blocker]

    plain = ok(loom("bead", "create", "--project", str(project_id), "a plain one"))
    assert plain.startswith("Created bead ") and "a plain one" in plain

    shown = ok(loom("bead", "show", str(created["id"]))).splitlines()
    assert "title: needs the blocker" in shown
    assert f"blocked_by: {blocker}" in shown
    assert any(line.startswith("tags: ") and tag in line for line in shown)

    rows = table(ok(loom("bead", "list", "--project", str(project_id))))
    assert rows[0] == ["ID", "P", "STATUS", "TYPE", "ASSIGNEE", "TITLE"]
    assert rows[1] == [str(created["id"]), "P0", "open", "feature", "-", "needs the blocker"]  # P0 first
    assert len(rows) == 4

    by_tag = as_json(loom("-o", "json", "bead", "list", "--tag", tag))
    assert [b["id"] for b in by_tag["items"]] == [created["id"]] and by_tag["total"] == 1
    bugs = as_json(loom("-o", "json", "bead", "list", "--project", str(project_id), "--type", "bug"))
    assert [b["id"] for b in bugs["items"]] == [blocker]
    p1 = as_json(loom("-o", "json", "bead", "list", "--project", str(project_id), "--priority", "1"))
    assert [b["id"] for b in p1["items"]] == [blocker]
    none_closed = as_json(loom("-o", "json", "bead", "list", "--project", str(project_id), "--status", "closed"))
    assert (none_closed["items"], none_closed["total"]) == ([], 0)
    assert "No beads found." in ok(loom("bead", "list", "--project", str(project_id), "--status", "closed"))

    paged = ok(loom("bead", "list", "--project", str(project_id), "--limit", "2", "--offset", "1"))
    assert paged.splitlines()[-1] == "2 of 3 shown"


def test_long_titles_are_truncated_in_tables(loom, http, project_id):
    title = "word " * 39 + "END"
    bead_id = make_bead(http, project_id, title)
    out = ok(loom("bead", "list", "--project", str(project_id)))
    assert title not in out and "END" not in out and "…" in out
    assert f"title: {title}" in ok(loom("bead", "show", str(bead_id))).splitlines()


def test_ready_follows_blockers_closing(loom, http, project_id):
    blocker = make_bead(http, project_id, "first")
    waiting = as_json(loom("-o", "json", "bead", "create", "--project", str(project_id), "second",
                           "--blocked-by", str(blocker)))["id"]
    assert ready_ids(loom, project_id) == {blocker}
    assert "second" not in ok(loom("bead", "ready", "--project", str(project_id)))

    out = ok(loom("bead", "close", str(blocker), "--reason", "done by hand"))
    assert out.startswith(f"Bead {blocker} closed")
    closed = http.get(f"/beads/{blocker}").json()
    assert (closed["status"], closed["status_reason"]) == ("closed", "done by hand")
    assert ready_ids(loom, project_id) == {waiting}


def test_dependencies_add_and_remove(loom, http, project_id):
    first, second = make_bead(http, project_id, "one"), make_bead(http, project_id, "two")
    assert ready_ids(loom, project_id) == {first, second}

    out = ok(loom("bead", "dep", "add", str(second), str(first)))
    assert f"Bead {second} is now blocked by {first}" in out
    assert http.get(f"/beads/{second}").json()["blocked_by"] == [first]
    assert ready_ids(loom, project_id) == {first}

    cycle = failed(loom("bead", "dep", "add", str(first), str(second)))
    assert "(field: blocked_by)" in cycle
    assert http.get(f"/beads/{first}").json()["blocked_by"] == []

    assert f"no longer blocked by {first}" in ok(loom("bead", "dep", "rm", str(second), str(first)))
    assert http.get(f"/beads/{second}").json()["blocked_by"] == []
    assert ready_ids(loom, project_id) == {first, second}
    assert "not blocked by" in failed(loom("bead", "dep", "rm", str(second), str(first)))


def test_claim_succeeds_once_and_the_loser_gets_an_error(loom, http, project_id):
    bead_id = make_bead(http, project_id, "claim me")
    agents = [as_json(loom("-o", "json", "agent", "create", unique("claimer"), "--persona", "engineer",
                           "--project", str(project_id)))["id"] for _ in range(2)]

    first = ok(loom("bead", "claim", str(bead_id), "--agent", str(agents[0])))
    assert f"Bead {bead_id} claimed by agent {agents[0]}" in first
    stored = http.get(f"/beads/{bead_id}").json()
    assert (stored["status"], stored["assigned_to"]) == ("in_progress", agents[0])
    assert http.get(f"/agents/{agents[0]}").json()["current_bead_id"] == bead_id

    second = failed(loom("bead", "claim", str(bead_id), "--agent", str(agents[1])))
    assert f"bead {bead_id} is in_progress" in second
    assert http.get(f"/beads/{bead_id}").json()["assigned_to"] == agents[0]
    assert http.get(f"/agents/{agents[1]}").json()["status"] == "idle"

    rows = table(ok(loom("bead", "list", "--project", str(project_id), "--assigned-to", str(agents[0]))))
    assert rows[1][:5] == [str(bead_id), "P2", "in_progress", "task", str(agents[0])]


def test_unblock_a_bead_that_is_not_blocked_fails_clearly(loom, http, project_id):
    bead_id = make_bead(http, project_id, "never blocked")
    message = failed(loom("bead", "unblock", str(bead_id), "--reason", "why not"))
    assert message.strip() == f"Error: bead {bead_id} is open, not blocked (field: status)"
    assert http.get(f"/beads/{bead_id}").json()["status"] == "open"

    assert http.patch(f"/beads/{bead_id}", json={"status": "blocked", "reason": "waiting"}).status_code == 200
    assert "unblocked (now open)" in ok(loom("bead", "unblock", str(bead_id), "--reason", "cleared"))
    assert http.get(f"/beads/{bead_id}").json()["status_reason"] == "cleared"


# --------------------------------------------------------------------------- agents, personas, providers

def test_agent_create_list_pause_resume(loom, http, project_id):
    name = unique("agent")
    out = ok(loom("agent", "create", name, "--persona", "qa-engineer", "--project", str(project_id)))
    assert out.startswith("Created agent ") and "(persona qa-engineer)" in out
    agent_id = int(out.split()[2].rstrip(":"))
    assert http.get(f"/agents/{agent_id}").json()["name"] == name

    rows = table(ok(loom("agent", "list", "--project", str(project_id), "--limit", "500")))
    assert rows[0] == ["ID", "NAME", "PERSONA", "STATUS", "PROJECT", "BEAD"]
    assert [str(agent_id), name, "qa-engineer", "idle", str(project_id), "-"] in rows

    assert f"Agent {agent_id} is now paused" in ok(loom("agent", "pause", str(agent_id)))
    assert http.get(f"/agents/{agent_id}").json()["status"] == "paused"
    paused = as_json(loom("-o", "json", "agent", "list", "--project", str(project_id), "--status", "paused"))
    assert [a["id"] for a in paused["items"]] == [agent_id]

    assert f"Agent {agent_id} is now idle" in ok(loom("agent", "resume", str(agent_id)))
    assert http.get(f"/agents/{agent_id}").json()["status"] == "idle"
    assert "not paused" in failed(loom("agent", "resume", str(agent_id)))
    assert "unknown persona" in failed(loom("agent", "create", unique("x"), "--persona", "no-such-persona"))


def test_persona_list_and_show(loom, http):
    rows = table(ok(loom("persona", "list")))
    assert rows[0] == ["NAME", "TITLE", "ROLE"]
    names = {row[0] for row in rows[1:]}
    assert {"engineer", "qa-engineer"} <= names

    engineer = http.get("/personas/engineer").json()
    out = ok(loom("persona", "show", "engineer"))
    assert out.startswith("name: engineer\n")
    assert f"title: {engineer['title']}" in out
    assert engineer["instructions"].strip() in out
    assert as_json(loom("-o", "json", "persona", "show", "engineer")) == engineer
    assert "not found" in failed(loom("persona", "show", "no-such-persona"))


def test_provider_add_list_check_never_show_the_key(loom, http):
    secret = "sk-cli-" + uuid.uuid4().hex
    name = unique("provider")
    added = loom("provider", "add", name, "--endpoint", "http://127.0.0.1:9/v1", "--model", "m-1",
                 "--api-key", secret)
    assert f"key ****{secret[-4:]}" in ok(added)
    assert secret not in added.output
    provider_id = int(added.stdout.split()[2].rstrip(":"))
    stored = http.get(f"/providers/{provider_id}").json()
    assert (stored["name"], stored["endpoint"], stored["model"]) == (name, "http://127.0.0.1:9/v1", "m-1")

    newest = ("--offset", str(http.get("/providers").json()["total"] - 1))
    listed = loom("provider", "list", *newest)
    rows = table(ok(listed))
    assert rows[0] == ["ID", "NAME", "STATUS", "LATENCY", "ENDPOINT", "MODEL"]
    assert [str(provider_id), name, "unknown", "-", "http://127.0.0.1:9/v1", "m-1"] in rows
    as_json_list = loom("-o", "json", "provider", "list", *newest)
    for result in (listed, as_json_list):
        assert secret not in result.output
    assert name in {p["name"] for p in json.loads(as_json_list.stdout)["items"]}

    checked = ok(loom("provider", "check", str(provider_id)))
    assert checked.startswith(f"Provider {provider_id} ({name}): down")
    assert http.get(f"/providers/{provider_id}").json()["status"] == "down"
    assert "(field: endpoint)" in failed(loom("provider", "add", unique("bad"), "--endpoint", "ftp://nope"))


# --------------------------------------------------------------------------- status

def test_status_summarises_health_and_counts(loom, http, live_server, project_id):
    make_bead(http, project_id, "counted")
    summary = as_json(loom("-o", "json", "status"))
    assert summary["health"]["status"] in ("ok", "degraded")  # no Beat runs Ralph beside the live server
    assert summary["health"]["checks"]["database"]["ok"] is True
    assert summary["projects"] == http.get("/projects").json()["total"]
    for status in ("open", "in_progress", "blocked", "closed"):
        total = http.get("/beads", params={"status": status, "limit": 1}).json()["total"]
        assert summary["beads"]["by_status"][status] == total
    assert summary["beads"]["by_status"]["open"] >= 1
    assert summary["agents"]["total"] == http.get("/agents").json()["total"]

    lines = ok(loom("status")).splitlines()
    assert lines[0].split() == ["Server:", live_server.url]
    assert lines[1].startswith(("Health:    ok (database ok", "Health:    degraded (database ok")), lines[1]
    assert "ralph FAILING" in lines[1] or lines[1].startswith("Health:    ok")  # degraded says why
    assert lines[2] == f"Projects:  {summary['projects']}"
    assert lines[3].startswith(f"Agents:    {summary['agents']['total']} (idle ")
    assert lines[4].startswith(f"Beads:     {summary['beads']['total']} (open ")


def test_credentials_file_keys_tokens_by_server(loom, live_server, tmp_path: Path):
    other = "http://127.0.0.1:9"
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"servers": {other: {"token": "elsewhere"}}}))
    ok(loom("login", "--username", live_server.admin_username, "--password", live_server.admin_password,
            key=None))
    servers = json.loads(path.read_text())["servers"]
    assert servers[other] == {"token": "elsewhere"} and servers[live_server.url]["token"] != "elsewhere"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ok(loom("logout", key=None))
    assert json.loads(path.read_text())["servers"] == {other: {"token": "elsewhere"}}
    assert "Not logged in" in ok(loom("logout", key=None))
