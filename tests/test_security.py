"""Roles, API keys, CSRF, login limits, secrets at rest and the security log."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import ApiKey, Provider
from app.web.api.routing import ROUTES
from tests.conftest import ADMIN_PASSWORD, login_token, unique

MISSING = "2000000000"
# Written out here, independently of app/services/users.py, so a wrong grant there fails this test.
ADMIN_ONLY = {"projects:admin", "providers:write", "users:admin", "system:admin"}
WRITES = {"projects:write", "beads:write", "agents:write", "personas:write", "decisions:write", "pair:use"}


def expected_allowed(role: str, permission: str) -> bool:
    if role == "admin":
        return True
    if permission.endswith(":read") or permission == "notifications:own":  # everyone reads; own inbox for all
        return True
    return role in ("user", "service") and permission in WRITES


def _url(rule: str) -> str:
    url = re.sub(r"<id:\w+>", MISSING, rule)
    return re.sub(r"<string\([^)]*\):\w+>", "zz-no-such-thing", url)


def _make_user(api, role: str) -> tuple[str, str]:
    name, password = unique(role), "password-" + unique()
    assert api.post("/api/v1/users", json={"username": name, "password": password, "role": role}).status_code == 201
    return name, password


def _api_key(client, token: str, **body) -> dict:
    response = client.post("/api/v1/auth/api-keys", json={"name": unique("k"), **body},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _key_for_role(app, api, role: str) -> str:
    """A full-permission API key of a fresh user with this role (service users get theirs from an admin)."""
    name, password = _make_user(api, role)
    client = app.test_client()
    if role == "service":  # no password logins: create the key with a short-lived admin promotion
        user_id = next(u["id"] for u in api.get("/api/v1/users?limit=500").get_json()["items"] if u["username"] == name)
        api.patch(f"/api/v1/users/{user_id}", json={"role": "user"})
        key = _api_key(client, login_token(client, name, password))["key"]
        api.patch(f"/api/v1/users/{user_id}", json={"role": "service"})
        return key
    return _api_key(client, login_token(client, name, password))["key"]


@pytest.mark.parametrize("role", ["admin", "user", "viewer", "service"])
def test_role_route_matrix_for_api_keys_and_sessions(app, api, role):
    key = _key_for_role(app, api, role)
    session_client = None
    if role != "service":
        name, password = _make_user(api, role)
        session_client = app.test_client()
        csrf = session_client.post("/api/v1/auth/login", json={"username": name, "password": password}
                                   ).get_json()["csrf_token"]
    for spec in ROUTES:
        if spec.permission is None or spec.rule.endswith("/auth/logout"):
            continue
        callers = [("key", app.test_client(), {"X-API-Key": key})]
        if session_client is not None:
            callers.append(("session", session_client, {"X-CSRF-Token": csrf}))
        for kind, client, headers in callers:
            response = client.open(_url(spec.rule), method=spec.method, json={}, headers=headers)
            what = f"{role} {kind} {spec.method} {spec.rule} -> {response.status_code} {response.get_json()}"
            if expected_allowed(role, spec.permission):
                assert response.status_code not in (401, 403), what
            else:
                assert response.status_code == 403, what


def test_refused_keys(app, api, admin_token):
    client = app.test_client()
    good = _api_key(client, admin_token)
    tampered = good["key"][:-1] + ("A" if good["key"][-1] != "A" else "B")
    for bad in ("garbage", "loom_", "loom_zzzzzzzz_" + "a" * 40, tampered,
                "loom_00000000_" + good["key"].split("_", 2)[2], good["key"] + "x"):
        assert client.get("/api/v1/beads", headers={"X-API-Key": bad}).status_code == 401, bad
    assert client.get("/api/v1/beads", headers={"Authorization": f"Bearer {good['key']}"}).status_code == 200
    expired = _api_key(client, admin_token)
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.id == expired["id"])
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    assert client.get("/api/v1/beads", headers={"X-API-Key": expired["key"]}).status_code == 401
    revoked = _api_key(client, admin_token)
    assert client.delete(f"/api/v1/auth/api-keys/{revoked['id']}",
                         headers={"Authorization": f"Bearer {admin_token}"}).status_code == 204
    assert client.get("/api/v1/beads", headers={"X-API-Key": revoked["key"]}).status_code == 401
    past = client.post("/api/v1/auth/api-keys", json={"name": "x", "expires_at": "2020-01-01T00:00:00Z"},
                       headers={"Authorization": f"Bearer {admin_token}"})
    assert past.status_code == 422 and past.get_json()["error"]["field"] == "expires_at"


def test_keys_are_stored_as_hash_and_prefix_only(app, admin_token):
    client = app.test_client()
    created = _api_key(client, admin_token)
    assert re.fullmatch(r"loom_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", created["key"])
    assert created["prefix"] == created["key"][5:13]
    with app.app_context():
        row = db.session.get(ApiKey, created["id"])
        assert created["key"] not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
    listing = client.get("/api/v1/auth/api-keys", headers={"Authorization": f"Bearer {admin_token}"})
    assert created["key"] not in listing.get_data(as_text=True)
    client.get("/api/v1/beads", headers={"X-API-Key": created["key"]})
    mine = {k["id"]: k for k in client.get("/api/v1/auth/api-keys?limit=500",
                                           headers={"Authorization": f"Bearer {admin_token}"}).get_json()["items"]}
    assert mine[created["id"]]["last_used_at"]


def test_viewer_keys_cannot_write(app, api):
    name, password = _make_user(api, "viewer")
    client = app.test_client()
    token = login_token(client, name, password)
    asked = client.post("/api/v1/auth/api-keys", json={"name": "w", "permissions": ["beads:write"]},
                        headers={"Authorization": f"Bearer {token}"})
    assert asked.status_code == 422 and "beads:write" in asked.get_json()["error"]["message"]
    # A key made while the user could write loses the right when the user is demoted.
    user_name, user_password = _make_user(api, "user")
    key = _api_key(client, login_token(client, user_name, user_password), permissions=["beads:write", "beads:read"])
    users = api.get("/api/v1/users?limit=500").get_json()["items"]
    user_id = next(u["id"] for u in users if u["username"] == user_name)
    api.patch(f"/api/v1/users/{user_id}", json={"role": "viewer"})
    response = client.post("/api/v1/projects", json={"name": unique()}, headers={"X-API-Key": key["key"]})
    assert response.status_code == 403
    response = client.post("/api/v1/beads", json={"project_id": 1, "title": "x"}, headers={"X-API-Key": key["key"]})
    assert response.status_code == 403
    assert client.get("/api/v1/beads", headers={"X-API-Key": key["key"]}).status_code == 200
    narrow = _api_key(client, login_token(client, "admin", ADMIN_PASSWORD), permissions=["beads:read"])
    assert client.post("/api/v1/beads", json={}, headers={"X-API-Key": narrow["key"]}).status_code == 403


def test_cross_site_form_post_with_a_session_cookie_is_refused(app):
    browser = app.test_client()
    browser.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    forged = browser.post("/api/v1/projects", data={"name": "evil"}, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and forged.get_json()["error"]["code"] == "csrf"
    logout = browser.post("/logout", data={})  # no token: still logged in
    assert logout.status_code == 302 and browser.get("/api/v1/auth/me").status_code == 200


def test_login_attempts_are_rate_limited(app, api):
    name, password = _make_user(api, "user")
    client = app.test_client()
    here, elsewhere = {"REMOTE_ADDR": "10.77.0.1"}, {"REMOTE_ADDR": "10.77.0.2"}
    for _ in range(10):
        response = client.post("/api/v1/auth/login", json={"username": name, "password": "wrong"}, environ_base=here)
        assert response.status_code == 401
    blocked = client.post("/api/v1/auth/login", json={"username": name, "password": password}, environ_base=here)
    assert blocked.status_code == 429 and blocked.get_json()["error"]["code"] == "rate_limited"
    moved = client.post("/api/v1/auth/login", json={"username": name, "password": password}, environ_base=elsewhere)
    assert moved.status_code == 429  # the per-user limit follows the user
    another_user, another_password = _make_user(api, "user")
    assert client.post("/api/v1/auth/login", json={"username": another_user, "password": another_password},
                       environ_base=here).status_code == 200
    app.extensions["loom.redis"]().delete(f"loom:login:user:{name.lower()}", "loom:login:addr:10.77.0.1")


def test_provider_keys_are_encrypted_at_rest(app, api):
    secret = "sk-live-" + unique("secret")
    created = api.post("/api/v1/providers", json={"name": unique(), "endpoint": "http://127.0.0.1:9/v1",
                                                  "api_key": secret}).get_json()
    assert created["api_key"] == "****" + secret[-4:]
    with app.app_context():
        stored = db.session.scalar(select(Provider.api_key).where(Provider.id == created["id"]))
    assert stored.startswith("enc:v1:") and secret not in stored
    assert secret not in api.get(f"/api/v1/providers/{created['id']}").get_data(as_text=True)


def test_security_events_are_recorded_and_admin_only(app, api, client):
    name, password = _make_user(api, "user")
    client.post("/api/v1/auth/login", json={"username": name, "password": "nope"})
    token = login_token(client, name, password)
    key = _api_key(client, token)
    client.delete(f"/api/v1/auth/api-keys/{key['id']}", headers={"Authorization": f"Bearer {token}"})
    user_id = next(u["id"] for u in api.get("/api/v1/users?limit=500").get_json()["items"] if u["username"] == name)
    api.patch(f"/api/v1/users/{user_id}", json={"role": "viewer"})
    events = api.get(f"/api/v1/security/events?username={name}").get_json()["items"]
    kinds = [e["type"] for e in reversed(events)]
    assert kinds == ["user.created", "login.failed", "login.ok", "apikey.created", "apikey.revoked",
                     "user.role_changed"], kinds
    assert events[0]["details"] == {"from": "user", "to": "viewer"} and events[0]["actor"] == "admin"
    assert client.get("/api/v1/security/events", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_service_accounts_cannot_log_in_with_a_password(api, client):
    name, password = _make_user(api, "service")
    assert client.post("/api/v1/auth/login", json={"username": name, "password": password}).status_code == 401


def test_changing_my_password_ends_other_tokens(app, api):
    name, password = _make_user(api, "user")
    client = app.test_client()
    old_token = login_token(client, name, password)
    headers = {"Authorization": f"Bearer {old_token}"}
    wrong = client.post("/api/v1/auth/password", json={"current_password": "nope", "new_password": "x" * 12},
                        headers=headers)
    assert wrong.status_code == 401 and wrong.get_json()["error"]["field"] == "current_password"
    ok = client.post("/api/v1/auth/password", json={"current_password": password, "new_password": "y" * 12},
                     headers=headers)
    assert ok.status_code == 200
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert login_token(client, name, "y" * 12)


def test_an_api_key_never_mints_or_revokes_beyond_its_own_grant(app, api):
    """A read-only key (the one README gives Prometheus) could create a full key of its admin owner."""
    client = app.test_client()
    admin = login_token(client, "admin", ADMIN_PASSWORD)
    reader = _api_key(client, admin, permissions=["system:read"])["key"]
    other = _api_key(client, admin, permissions=["beads:read"])
    headers = {"X-API-Key": reader}
    minted = client.post("/api/v1/auth/api-keys", json={"name": unique("m")}, headers=headers)
    assert minted.status_code == 201 and minted.get_json()["permissions"] == ["system:read"], minted.get_json()
    assert client.get("/api/v1/users", headers={"X-API-Key": minted.get_json()["key"]}).status_code == 403
    wider = client.post("/api/v1/auth/api-keys", json={"name": unique("m"), "permissions": ["users:admin"]},
                        headers=headers)
    assert wider.status_code == 422 and wider.get_json()["error"]["field"] == "permissions"
    assert "API key" in wider.get_json()["error"]["message"]
    assert client.delete(f"/api/v1/auth/api-keys/{other['id']}", headers=headers).status_code == 404
    assert client.get("/api/v1/beads", headers={"X-API-Key": other["key"]}).status_code == 200  # not revoked
    full = client.post("/api/v1/auth/api-keys", json={"name": unique("m")},
                       headers={"Authorization": f"Bearer {admin}"})
    assert full.get_json()["permissions"] is None  # a password login still makes a key of the whole role


def test_the_last_active_admin_cannot_be_disabled_or_demoted(app, api):
    users = api.get("/api/v1/users?limit=500").get_json()["items"]
    admins = [u for u in users if u["role"] == "admin" and u["is_active"]]
    for extra in admins[1:]:  # leave exactly one active admin
        assert api.patch(f"/api/v1/users/{extra['id']}", json={"role": "user"}).status_code == 200
    last = admins[0]
    for change, field in (({"is_active": False}, "is_active"), ({"role": "viewer"}, "role")):
        refused = api.patch(f"/api/v1/users/{last['id']}", json=change)
        assert refused.status_code == 409, refused.get_json()
        error = refused.get_json()["error"]
        assert (error["code"], error["field"]) == ("last_admin", field) and "last active admin" in error["message"]
    second, _ = _make_user(api, "admin")
    listed = api.get("/api/v1/users?limit=500").get_json()["items"]
    second_id = next(u["id"] for u in listed if u["username"] == second)
    assert api.patch(f"/api/v1/users/{second_id}", json={"role": "user"}).status_code == 200  # another admin: fine
    assert api.patch(f"/api/v1/users/{second_id}", json={"role": "admin"}).status_code == 200
    assert api.patch(f"/api/v1/users/{second_id}", json={"is_active": False}).status_code == 200
    assert api.get("/api/v1/auth/me").status_code == 200  # the last admin is still in


@pytest.mark.parametrize("depth", [900, 1000, 5000])
def test_deeply_nested_json_is_a_400_not_a_500(client, depth):
    body = "[" * depth + "]" * depth
    response = client.post("/api/v1/auth/login", data=body, content_type="application/json")  # public
    assert response.status_code in (400, 422), (depth, response.status_code)
    assert response.get_json()["error"]["field"] == "body"


def test_guessing_the_current_password_is_rate_limited_like_logins(app, api):
    name, password = _make_user(api, "viewer")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {login_token(client, name, password)}"}
    statuses = [client.post("/api/v1/auth/password", json={"current_password": f"guess-{n}",
                                                            "new_password": "a-new-password-1"},
                            headers=headers).status_code for n in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses
    right = client.post("/api/v1/auth/password", json={"current_password": password,
                                                       "new_password": "a-new-password-1"}, headers=headers)
    assert right.status_code == 429  # locked for the window, even with the right one


def test_an_admin_issues_a_key_for_a_service_account_and_nobody_else_can(app, api):
    name, _ = _make_user(api, "service")
    service_id = next(u["id"] for u in api.get("/api/v1/users?limit=500").get_json()["items"] if u["username"] == name)
    made = api.post("/api/v1/auth/api-keys", json={"name": "ci bot", "user_id": service_id})
    assert made.status_code == 201 and made.get_json()["user"] == name, made.get_json()
    client = app.test_client()
    bot = {"X-API-Key": made.get_json()["key"]}
    assert client.post("/api/v1/projects", json={"name": unique("bot")}, headers=bot).status_code == 201
    assert client.get("/api/v1/users", headers=bot).status_code == 403  # a service account is no admin
    too_much = api.post("/api/v1/auth/api-keys", json={"name": "x", "user_id": service_id,
                                                       "permissions": ["users:admin"]})
    assert too_much.status_code == 422 and too_much.get_json()["error"]["field"] == "permissions"
    user_name, user_password = _make_user(api, "user")
    as_user = {"Authorization": f"Bearer {login_token(client, user_name, user_password)}"}
    refused = client.post("/api/v1/auth/api-keys", json={"name": "x", "user_id": service_id}, headers=as_user)
    assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "user_id"
