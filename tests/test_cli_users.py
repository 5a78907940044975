"""`loom user ...` and `loom apikey ...` end to end: CliRunner against the live server, checked over httpx."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from app.cli.commands_users import expiry
from tests.cli_helpers import as_json, failed, ok, table
from tests.conftest import unique


LIST_KEYS = ("apikey", "list", "--limit", "500")  # the largest page: the server is shared


def stored_user(http: httpx.Client, username: str) -> dict:
    users = http.get("/users", params={"limit": 500}).json()["items"]
    return next(u for u in users if u["username"] == username)


def login(live_server, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{live_server.url}/api/v1/auth/login", json={"username": username, "password": password})


def printed_key(output: str) -> str:
    """The key `loom apikey create` shows: the one indented line of its output."""
    lines = [line.strip() for line in output.splitlines() if line.startswith("    ") and line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def beads_with(live_server, headers: dict) -> int:
    return httpx.get(f"{live_server.url}/api/v1/beads", headers=headers).status_code


# --------------------------------------------------------------------------- offline behaviour

def test_expiry_turns_a_duration_into_a_utc_timestamp():
    now = datetime(2030, 1, 31, 12, 0, 0, tzinfo=UTC)
    assert expiry(timedelta(days=30), None, now) == "2030-03-02T12:00:00Z"
    assert expiry(timedelta(minutes=90), None, now) == "2030-01-31T13:30:00Z"
    other_zone = datetime.fromisoformat("2031-06-01T10:00:00+02:00")
    assert expiry(None, other_zone, now) == "2031-06-01T08:00:00Z"
    assert expiry(None, None, now) is None


def test_bad_options_are_usage_errors(loom):
    for args in (("apikey", "create", "k", "--expires-in", "5x"),
                 ("apikey", "create", "k", "--expires-in", "0d"),
                 ("apikey", "create", "k", "--expires-at", "next tuesday"),
                 ("apikey", "create", "k", "--expires-in", "1d", "--expires-at", "2031-01-01T00:00:00Z"),
                 ("user", "create", "someone", "--password", "long-enough", "--role", "root"),
                 ("user", "set-role", "someone", "superuser"),
                 ("apikey", "revoke", "not-a-number")):
        result = loom(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


# --------------------------------------------------------------------------- users

def test_user_create_list_set_role_disable_enable(loom, http, live_server):
    name, password = unique("cli-user"), "cli-user-password"
    out = ok(loom("user", "create", name, "--role", "viewer", "--password", password))
    assert out.startswith("Created user ") and f"{name} (viewer)" in out
    user = stored_user(http, name)
    assert (user["role"], user["is_active"]) == ("viewer", True)

    rows = table(ok(loom("user", "list", "--limit", "500")))
    assert rows[0] == ["ID", "USERNAME", "ROLE", "ACTIVE", "LAST LOGIN"]
    assert [str(user["id"]), name, "viewer", "yes", "never"] in rows
    page = as_json(loom("-o", "json", "user", "list", "--limit", "500"))
    assert user in page["items"]

    assert f"User {user['id']} ({name}) is now service" in ok(loom("user", "set-role", name, "service"))
    assert stored_user(http, name)["role"] == "service"
    assert "is now user" in ok(loom("user", "set-role", str(user["id"]), "user"))
    assert stored_user(http, name)["role"] == "user"

    token = login(live_server, name, password).json()["token"]
    assert beads_with(live_server, {"Authorization": f"Bearer {token}"}) == 200
    logged_in = [row for row in table(ok(loom("user", "list", "--limit", "500"))) if row[1] == name]
    assert logged_in[0][4].endswith(" UTC")

    assert f"Disabled user {user['id']} ({name})" in ok(loom("user", "disable", name))
    assert stored_user(http, name)["is_active"] is False
    assert login(live_server, name, password).status_code == 401
    assert beads_with(live_server, {"Authorization": f"Bearer {token}"}) == 401  # earlier tokens die too
    assert [str(user["id"]), name, "user", "no"] in [row[:4] for row in table(ok(loom("user", "list",
                                                                                       "--limit", "500")))]

    enabled = as_json(loom("-o", "json", "user", "enable", str(user["id"])))
    assert (enabled["username"], enabled["is_active"]) == (name, True)
    assert stored_user(http, name)["is_active"] is True
    assert login(live_server, name, password).status_code == 200


def test_user_create_prompts_for_the_password_twice(loom, live_server):
    name, password = unique("cli-prompted"), "prompted-password"
    result = loom("user", "create", name, stdin=f"first-try-typo\n{password}\n{password}\n{password}\n")
    assert "do not match" in result.output
    assert f"{name} (user)" in ok(result)
    assert password not in result.stdout  # hidden input
    assert login(live_server, name, password).status_code == 200


def test_duplicate_user_is_an_error_with_the_field(loom):
    name = unique("cli-dup-user")
    ok(loom("user", "create", name, "--password", "dup-password"))
    assert "(field: username)" in failed(loom("user", "create", name, "--password", "dup-password"))
    assert "(field: password)" in failed(loom("user", "create", unique("cli-short"), "--password", "short"))


def test_unknown_user_name_is_an_error(loom):
    ghost = unique("nobody")
    for command in (("set-role", ghost, "viewer"), ("disable", ghost), ("enable", ghost)):
        assert failed(loom("user", *command)).strip() == f"Error: no user named {ghost}"
    assert "not found" in failed(loom("user", "disable", "2147483647"))


def test_user_commands_need_an_admin(loom, live_server):
    viewer_token = live_server.token("viewer", "viewer-password")
    assert "users:admin" in failed(loom("user", "list", key=viewer_token))


# --------------------------------------------------------------------------- API keys

def test_apikey_create_use_list_and_revoke(loom, live_server):
    name = unique("cli-key")
    before = datetime.now(UTC)
    created = loom("apikey", "create", name, "--permission", "beads:read", "--expires-in", "1d")
    out = ok(created)
    key = printed_key(out)
    assert created.output.count(key) == 1  # shown once, and only here
    assert "This key is shown only once; store it now." in out.splitlines()
    assert out.startswith("Created API key ") and name in out and "permissions beads:read" in out

    assert beads_with(live_server, {"Authorization": f"Bearer {key}"}) == 200
    assert beads_with(live_server, {"X-API-Key": key}) == 200
    denied = httpx.post(f"{live_server.url}/api/v1/projects", json={"name": unique("by-key")},
                        headers={"Authorization": f"Bearer {key}"})
    assert denied.status_code == 403, denied.text

    listed = as_json(loom("-o", "json", *LIST_KEYS))
    items = listed["items"] if isinstance(listed, dict) else listed
    mine = next(k for k in items if k["name"] == name)
    assert mine["permissions"] == ["beads:read"]
    expires = datetime.fromisoformat(mine["expires_at"])
    assert before + timedelta(days=1) - timedelta(minutes=1) <= expires <= datetime.now(UTC) + timedelta(days=1)

    shown = loom(*LIST_KEYS)
    rows = table(ok(shown))
    assert rows[0] == ["ID", "NAME", "PREFIX", "USER", "PERMISSIONS", "EXPIRES", "LAST USED", "REVOKED"]
    row = next(r for r in rows if r[1] == name)
    assert row[:5] == [str(mine["id"]), name, mine["prefix"], live_server.admin_username, "beads:read"]
    assert row[5].endswith(" UTC") and row[7] == "no"
    for result in (shown, loom("-o", "json", *LIST_KEYS), loom("-o", "json", *LIST_KEYS, "--all")):
        assert key not in result.output

    assert ok(loom("apikey", "revoke", str(mine["id"]))).strip() == f"Revoked key {mine['id']}"
    assert beads_with(live_server, {"Authorization": f"Bearer {key}"}) == 401
    assert beads_with(live_server, {"X-API-Key": key}) == 401
    revoked = next(r for r in table(ok(loom(*LIST_KEYS))) if r[1] == name)
    assert revoked[7] != "no"
    assert failed(loom("apikey", "revoke", "2147483647"))


def test_apikey_json_output_and_unrestricted_keys(loom, live_server):
    name = unique("cli-key-json")
    at = "2031-06-01T08:00:00Z"
    created = as_json(loom("-o", "json", "apikey", "create", name, "--expires-at", at))
    assert {"id", "name", "prefix", "key", "permissions", "expires_at", "created_at"} <= set(created)
    assert created["name"] == name and not created["permissions"]
    assert datetime.fromisoformat(created["expires_at"]) == datetime.fromisoformat(at)

    row = next(r for r in table(ok(loom(*LIST_KEYS))) if r[1] == name)
    assert row[4:] == ["all of the user's", "2031-06-01 08:00 UTC", "never", "no"]
    assert beads_with(live_server, {"X-API-Key": created["key"]}) == 200
    used = next(r for r in table(ok(loom(*LIST_KEYS))) if r[1] == name)
    assert used[6].endswith(" UTC")
    assert as_json(loom("-o", "json", "apikey", "revoke", str(created["id"]))) == \
        {"id": created["id"], "revoked": True}


def test_apikey_list_all_shows_other_users_keys_to_admins(loom, live_server):
    name = unique("cli-key-of-user")
    user_token = live_server.token("user", "user-password")
    key_id = as_json(loom("-o", "json", "apikey", "create", name, key=user_token))["id"]
    try:
        assert name not in ok(loom(*LIST_KEYS))
        everyone = next(r for r in table(ok(loom(*LIST_KEYS, "--all"))) if r[1] == name)
        assert everyone[:4] == [str(key_id), name, everyone[2], "user"]
        assert name in [r[1] for r in table(ok(loom(*LIST_KEYS, key=user_token)))]
    finally:
        ok(loom("apikey", "revoke", str(key_id), key=user_token))
