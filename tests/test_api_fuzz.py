"""Walk every route of /api/v1/openapi.json with bad input: never a 5xx, always a JSON error naming the problem."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import unique

BAD_IDS = ["2000000000", "0", "99999999999", "abc", "-1", "1.5"]
BIG = "x" * 100_000


def _fixtures(api) -> dict:
    """Real rows, so bad bodies are tried against routes that would otherwise succeed."""
    project = api.post("/api/v1/projects", json={"name": unique("fuzz")}).get_json()
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "fuzz"}).get_json()
    other = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "other"}).get_json()
    agent = api.post("/api/v1/agents", json={"name": unique("a"), "persona": "engineer",
                                             "project_id": project["id"]}).get_json()
    provider = api.post("/api/v1/providers", json={"name": unique("p"), "endpoint": "http://127.0.0.1:9"}).get_json()
    user = api.post("/api/v1/users", json={"username": unique("u"), "password": "password123"}).get_json()
    decision = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "d", "type": "decision"})
    motivation = api.post("/api/v1/motivations", json={"name": unique("m"), "kind": "event", "event": "bead.closed",
                                                       "project_id": project["id"], "enabled": False,
                                                       "bead_template": {"title": "fuzz {bead_id}"}}).get_json()
    return {"project_id": project["id"], "bead_id": bead["id"], "other": other["id"], "agent_id": agent["id"],
            "provider_id": provider["id"], "user_id": user["id"], "name": "engineer", "key": "loop.max_iterations",
            "decision_id": decision.get_json()["id"], "motivation_id": motivation["id"]}


def _wrong_values(schema: dict, components: dict) -> list:
    """Values of the wrong type (and oversize / NUL strings) for one property schema."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    out: list = []
    if "string" in kinds:
        out += [12345, ["list"], BIG, "nul\x00byte", {"obj": 1}]
    if "integer" in kinds:
        out += ["7", 1.5, True, 10**30, -10**30, None if None not in kinds else "x"]
    if "boolean" in kinds:
        out += ["yes", 1]
    if "array" in kinds:
        out += ["notalist", [None], [BIG], list(range(5000))]
    return out or [object.__name__]


def _assert_clean(response, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.get_data(as_text=True)[:300]}"
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert body and "error" in body and body["error"].get("code") and body["error"].get("message"), \
            f"{what} -> {response.status_code} without a JSON error: {response.get_data(as_text=True)[:200]}"


def _paths(doc: dict):
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield path, method, op


@pytest.fixture()
def doc(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_lists_every_route(app, doc):
    """The OpenAPI document and the URL map agree, both ways."""
    documented = {(re.sub(r"\{(\w+)\}", r"<\1>", p), m.upper()) for p, m, _ in _paths(doc)}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/api/", "/health/", "/metrics")):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((re.sub(r"<(?:[^:>]+:)?(\w+)>", r"<\1>", rule.rule), method))
    assert documented == served


def test_bad_bodies_never_5xx(api, doc):
    ids = _fixtures(api)
    components = doc["components"]["schemas"]
    tried = 0
    for path, method, op in _paths(doc):
        if "requestBody" not in op:
            continue
        url = path.format(**ids)
        schema = components[op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        raw_bodies = ["{bad json", "[1, 2]", '"text"', "12", "null", "\xff\xfe", json.dumps({"unknown_field": 1})]
        for raw in raw_bodies:
            response = getattr(api, method)(url, data=raw, content_type="application/json")
            _assert_clean(response, f"{method.upper()} {url} body={raw!r}")
            assert response.status_code in (400, 401, 404, 409, 422), (method, url, raw, response.status_code)
            tried += 1
        for prop, prop_schema in schema.get("properties", {}).items():
            for value in _wrong_values(prop_schema, components):
                response = getattr(api, method)(url, json={prop: value})
                _assert_clean(response, f"{method.upper()} {url} {prop}={str(value)[:40]!r}")
                if response.status_code in (400, 422):
                    assert response.get_json()["error"].get("field"), (method, url, prop, response.get_json())
                tried += 1
    assert tried > 300


def test_unknown_and_malformed_ids_never_5xx(api, doc):
    ids = _fixtures(api)
    for path, method, _ in _paths(doc):
        names = re.findall(r"\{(\w+)\}", path)
        for name in names:
            if name in ("name", "key"):
                bad_values = ["no-such-thing", "x" * 300, "%00", "..%2F..%2Fetc"]
            else:
                bad_values = BAD_IDS
            for bad in bad_values:
                url = path.format(**{**ids, name: bad})
                response = getattr(api, method)(url, json={})
                _assert_clean(response, f"{method.upper()} {url}")
                assert response.status_code >= 400, f"{method.upper()} {url} accepted a bad {name}"


def test_bad_query_strings_never_5xx(api, doc):
    ids = _fixtures(api)
    for path, method, op in _paths(doc):
        if method != "get":
            continue
        url = path.format(**ids)
        for param in [p for p in op.get("parameters", []) if p["in"] == "query"]:
            for bad in ["zzz", "-5", "99999999999999999999", "%00", "x" * 5000]:
                response = api.get(f"{url}?{param['name']}={bad}")
                _assert_clean(response, f"GET {url}?{param['name']}={bad[:20]}")


def test_oversize_request_body_is_413_json(api, project):
    response = api.post("/api/v1/beads", data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                        content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_unknown_route_and_method_are_json(api):
    missing = api.get("/api/v1/nope")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong = api.put("/api/v1/beads")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "method_not_allowed"
