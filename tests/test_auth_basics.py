"""Authentication and permissions on every route: declared in one place, enforced for tokens and sessions."""
from __future__ import annotations

import re

from app.extensions import db
from app.models import User
from app.web.api.routing import ROUTES
from tests.conftest import login_token, unique

PUBLIC = {"/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/openapi.json", "/health/live", "/health/ready"}


def test_every_api_route_declares_a_permission(app):
    declared = {(spec.rule, spec.method) for spec in ROUTES}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/api/", "/health/")):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (rule.rule, method) in declared, f"{method} {rule.rule} has no declared permission"
    public = {spec.rule for spec in ROUTES if spec.permission is None}
    assert public == PUBLIC


def test_anonymous_requests_get_401_json(client):
    for spec in ROUTES:
        if spec.permission is None:
            continue
        url = re.sub(r"<id:\w+>", "1", spec.rule)
        url = re.sub(r"<string\([^)]*\):\w+>", "engineer", url)
        response = client.open(url, method=spec.method, json={})
        assert response.status_code == 401, (spec.method, url, response.status_code)
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_bad_credentials_and_tokens(client):
    wrong = client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["error"]["code"] == "bad_credentials"
    unknown = client.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope"})
    assert unknown.status_code == 401 and unknown.get_json() == wrong.get_json()
    for header in ({"Authorization": "Bearer garbage"}, {"X-API-Key": "garbage"}, {"Authorization": "Bearer "}):
        response = client.get("/api/v1/projects", headers=header)
        assert response.status_code == 401, header


def test_viewer_reads_but_cannot_write(client):
    token = login_token(client, "viewer", "viewer-password")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/beads", headers=headers).status_code == 200
    response = client.post("/api/v1/projects", json={"name": unique()}, headers=headers)
    assert response.status_code == 403 and "projects:write" in response.get_json()["error"]["message"]
    assert client.get("/api/v1/users", headers=headers).status_code == 403


def test_user_writes_but_is_not_admin(client):
    headers = {"Authorization": f"Bearer {login_token(client, 'user', 'user-password')}"}
    assert client.post("/api/v1/projects", json={"name": unique()}, headers=headers).status_code == 201
    assert client.post("/api/v1/providers", json={"name": unique(), "endpoint": "http://x"},
                       headers=headers).status_code == 403
    assert client.put("/api/v1/config/lease_seconds", json={"value": 60}, headers=headers).status_code == 403


def test_session_cookie_writes_need_the_csrf_token(app):
    browser = app.test_client()
    login = browser.post("/api/v1/auth/login", json={"username": "admin", "password": "admin-password-for-tests"})
    csrf = login.get_json()["csrf_token"]
    assert browser.get("/api/v1/auth/me").status_code == 200  # the cookie alone reads
    refused = browser.post("/api/v1/projects", json={"name": unique()})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "csrf"
    wrong = browser.post("/api/v1/projects", json={"name": unique()}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    ok = browser.post("/api/v1/projects", json={"name": unique()}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    browser.post("/api/v1/auth/logout")
    assert browser.get("/api/v1/auth/me").status_code == 401


def test_password_change_and_disable_revoke_tokens(client, api):
    name = unique("u")
    created = api.post("/api/v1/users", json={"username": name, "password": "first-password"}).get_json()
    token = login_token(client, name, "first-password")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    api.patch(f"/api/v1/users/{created['id']}", json={"password": "second-password"})
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    token = login_token(client, name, "second-password")
    api.patch(f"/api/v1/users/{created['id']}", json={"is_active": False})
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/api/v1/auth/login", json={"username": name, "password": "second-password"}).status_code == 401


def test_passwords_are_hashed_with_a_kdf(ctx):
    admin = db.session.query(User).filter_by(username="admin").one()
    assert admin.password_hash.startswith("scrypt:") and "admin-password" not in admin.password_hash


def test_pages_redirect_anonymous_visitors_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/login").status_code == 200


def test_browser_login_and_dashboard(app):
    browser = app.test_client()
    page = browser.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    bad = browser.post("/login", data={"username": "admin", "password": "wrong", "csrf_token": csrf})
    assert bad.status_code == 401 and "Wrong username or password" in bad.get_data(as_text=True)
    ok = browser.post("/login?next=//evil.example/", data={"username": "admin",
                      "password": "admin-password-for-tests", "csrf_token": csrf})
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    dashboard = browser.get("/")
    assert dashboard.status_code == 200 and "Dashboard" in dashboard.get_data(as_text=True)
