"""The OpenAPI document as a contract: every operation documents its success answer, the document is valid
OpenAPI 3.1 with valid JSON Schemas, and the bugs the schemathesis run found stay fixed."""
from __future__ import annotations

import re

import jsonschema_rs
import pytest
from openapi_spec_validator import validate as validate_openapi

from app import create_app
from app.extensions import db
from app.web.api import ROUTES
from app.web.api.openapi import openapi_path
from app.web.api.schema_base import NO_NUL
from tests.conftest import free_port


@pytest.fixture()
def doc(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def undocumented_answers(doc: dict) -> list[str]:
    """Operations whose success answer has no schema (204: must have none), as readable problems."""
    problems = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            successes = {code: answer for code, answer in op["responses"].items() if code.startswith("2")}
            if not successes:
                problems.append(f"{label}: no success status")
            for code, answer in successes.items():
                content = answer.get("content", {})
                schema = (content.get("application/json") or content.get("text/event-stream")
                          or content.get("text/plain") or {}).get("schema")
                if code == "204" and "content" in answer:
                    problems.append(f"{label}: a 204 answer documents a body")
                elif code != "204" and not schema:
                    problems.append(f"{label}: {code} answer has no application/json schema (route(..., response=))")
    return problems


def test_every_operation_documents_its_success_answer(doc):
    assert undocumented_answers(doc) == []


def test_every_route_declares_its_response_model():
    missing = [f"{spec.method} {openapi_path(spec.rule)}" for spec in ROUTES
               if (spec.response is None) != (spec.status == 204 and not spec.other_statuses)]
    assert missing == [], "declare route(..., response=Model); only a 204 route has none"


def test_the_completeness_check_can_fail(doc):
    """The check above is not vacuous: an operation without a schema, or a 204 with a body, is reported."""
    op = doc["paths"]["/api/v1/projects"]["get"]
    op["responses"]["200"].pop("content")
    doc["paths"]["/api/v1/projects/{project_id}"]["delete"]["responses"]["204"]["content"] = {"application/json": {}}
    assert undocumented_answers(doc) == ["GET /api/v1/projects: 200 answer has no application/json schema "
                                         "(route(..., response=))",
                                         "DELETE /api/v1/projects/{project_id}: a 204 answer documents a body"]


def test_document_is_valid_openapi_3_1(doc):
    validate_openapi(doc)  # raises on any violation of the OpenAPI 3.1 schema, Schema Objects included
    assert doc["openapi"] == "3.1.0"


def test_every_component_is_valid_json_schema_2020_12(doc):
    for name, schema in doc["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)  # raises on an invalid JSON Schema
        assert schema.get("type") == "object" or "anyOf" in schema or "enum" in schema, name


def test_every_ref_resolves(doc):
    def refs(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    components = doc["components"]["schemas"]
    found = list(refs(doc["paths"])) + list(refs(components))
    assert found and all(ref.removeprefix("#/components/schemas/") in components for ref in found)


def test_answers_validate_against_their_schemas(api, project, doc):
    """A real answer against its documented schema (the schemathesis run does this for every operation)."""
    registry = jsonschema_rs.Registry([("urn:loom", doc)])
    for url, path in [(f"/api/v1/projects/{project['id']}", "/api/v1/projects/{project_id}"),
                      ("/api/v1/projects", "/api/v1/projects"), ("/api/v1/auth/me", "/api/v1/auth/me")]:
        ref = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        validator = jsonschema_rs.validator_for({"$ref": "urn:loom" + ref}, registry=registry)
        answer = api.get(url).get_json()
        validator.validate(answer)
        assert not validator.is_valid({**answer, "unexpected": 1}), "answers are documented with exactly their keys"


def test_unready_answer_matches_its_schema(app, primary_database_url, tmp_path, doc):
    """/health/ready documents its 503 with the same model; nothing listens on this Redis port."""
    broken = create_app({"DATABASE_URL": primary_database_url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                         "DATA_DIR": str(tmp_path), "SECRET_KEY": "test-secret", "TESTING": True,
                         "AUTO_DISPATCH": False})
    response = broken.test_client().get("/health/ready")
    with broken.app_context():
        db.engine.dispose()
    assert response.status_code == 503
    answer = response.get_json()
    assert (answer["checks"]["database"]["ok"], answer["checks"]["redis"]["ok"]) == (True, False)
    ref = doc["paths"]["/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]["$ref"]
    validator = jsonschema_rs.validator_for({"$ref": "urn:loom" + ref},
                                            registry=jsonschema_rs.Registry([("urn:loom", doc)]))
    validator.validate(answer)


def test_undeclared_methods_are_405_with_allow(api, doc):
    """Every documented path: a method it does not declare is a JSON 405 naming the declared ones (RFC 9110's
    Allow; it was missing). schemathesis's unsupported_method check needs its coverage phase, so it is done here."""
    for path, item in doc["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: "engineer" if m.group(1) in ("name", "key") else "1", path)
        declared = {method.upper() for method in item}
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - declared):
            response = getattr(api, method.lower())(url)
            assert response.status_code == 405, (method, path, response.status_code)
            assert response.get_json()["error"]["code"] == "method_not_allowed"
            allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")} - {"HEAD", "OPTIONS"}
            assert allowed == declared, (method, path, response.headers.get("Allow"))


# --- bugs the schemathesis run found, pinned


def test_integral_numbers_are_integers(api, project):
    """JSON (and JSON Schema's `integer`) does not tell 2.0 from 2; the API refused 2.0 with a 422."""
    response = api.post("/api/v1/beads", data=f'{{"project_id": {project["id"]}.0, "title": "t", "priority": 1.0}}',
                        content_type="application/json")
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["project_id"], response.get_json()["priority"]) == (project["id"], 1)
    fraction = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "t", "priority": 1.5})
    assert fraction.status_code == 422 and fraction.get_json()["error"]["field"] == "priority"


def test_no_nul_rule_is_documented(doc):
    """Bodies and queries refuse NUL characters; the document did not say so, so valid-looking data got a 422."""
    bead = doc["components"]["schemas"]["BeadCreate"]["properties"]
    assert bead["title"]["pattern"] == NO_NUL and bead["tags"]["items"]["pattern"] == NO_NUL
    tag = next(p for p in doc["paths"]["/api/v1/beads"]["get"]["parameters"] if p["name"] == "tag")
    assert {"type": "string", "minLength": 1, "maxLength": 50, "pattern": NO_NUL} in tag["schema"]["anyOf"]


def test_patch_agent_with_null_persona_is_a_clear_422(api, project):
    """`{"persona": null}` reached session.get(Persona, None): a SAWarning (a 500 under -W error)."""
    agent = api.post("/api/v1/agents", json={"name": "nullable", "persona": "engineer",
                                             "project_id": project["id"]}).get_json()
    response = api.patch(f"/api/v1/agents/{agent['id']}", json={"persona": None})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "persona"
    assert api.get(f"/api/v1/agents/{agent['id']}").get_json()["persona"] == "engineer"


def test_patch_null_for_a_required_column_is_a_clear_422(api, project, doc):
    """PATCH {"description": null} wrote NULL into a NOT NULL column: a 409 "conflicts with existing data"."""
    for field in ("description", "default_branch", "git_strategy", "dedicated", "name"):
        response = api.patch(f"/api/v1/projects/{project['id']}", json={field: None})
        assert response.status_code == 422, (field, response.get_json())
        assert response.get_json()["error"]["field"] == field
        assert "anyOf" not in doc["components"]["schemas"]["ProjectUpdate"]["properties"][field]
    cleared = api.patch(f"/api/v1/projects/{project['id']}", json={"max_concurrent": None})  # null: the default
    assert cleared.status_code == 200 and cleared.get_json()["max_concurrent"] is None
