"""Schemathesis against every operation of the live /api/v1/openapi.json, as an admin, on a database of its own.

Each operation gets a fixed number of derandomized examples of valid data and (where it takes input) of
invalid data. Every answer must be no 5xx, a documented status and content type and match its documented
schema; valid data must be accepted and invalid data refused. The database is seeded with a few real rows
whose ids the generator mixes into ids it makes up (schemathesis fuzz dictionaries), so answers about real
beads, agents, ... are checked too, not only 404s. The run has its own database and Redis database, so what
it deletes or disables cannot touch the rest of the suite; deletes run last so the seeded rows live long.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.extensions import db
from app.services.decisions import escalate
from app.web.api import ROUTES
from app.web.api.openapi import openapi_path
from app.web.api.routing import json_number
from tests.conftest import ADMIN_PASSWORD, _engine_numbers, build_app, fresh_database, login_token

EXAMPLES = 20  # per operation and generation mode
SPECS = {f"{spec.method} {openapi_path(spec.rule)}": spec for spec in ROUTES}
# Invalid data needs something to be invalid: a path parameter, a query string or a body. Deletes go last.
RUNS = [(label, mode) for label, spec in sorted(SPECS.items(), key=lambda item: (item[1].method == "DELETE", item))
        for mode in GenerationMode if mode is GenerationMode.POSITIVE or spec.body or spec.query or "<" in spec.rule]
# Where real ids go: (dictionary, parameter) pairs, each used for about half of the examples that have it.
REAL_VALUES = [
    ("beads", "path.bead_id"), ("beads", "path.other"), ("beads", "query.bead_id"), ("beads", "body.blocked_by"),
    ("beads", "body.blocked_by[*]"), ("decisions", "path.decision_id"), ("projects", "path.project_id"),
    ("projects", "query.project_id"), ("projects", "body.project_id"), ("agents", "path.agent_id"),
    ("agents", "query.assigned_to"), ("agents", "body.agent_id"), ("providers", "path.provider_id"),
    ("users", "path.user_id"), ("keys", "path.key_id"), ("personas", "path.name"), ("personas", "body.persona"),
    ("settings", "path.key"), ("endpoints", "body.endpoint"), ("usernames", "body.username"),
    ("motivations", "path.motivation_id"), ("motivations", "query.motivation_id"),
    ("passwords", "body.password"),  # a login that works; POST /auth/password's current_password is never bound
]

pytestmark = pytest.mark.slow


@schemathesis.check
def valid_data_passes_the_models(ctx, response, case):
    """Valid data may still be refused by a domain rule (422: an unknown persona, an expiry in the past, a name
    that is not a git branch), so positive_data_acceptance allows 422; but never by the route's own pydantic
    models, which would mean the documented request schema and the models disagree. The models see what the
    server read: the body and query string as sent."""
    spec = SPECS[case.operation.label]
    if response.status_code != 422 or case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return None
    sent = response.request
    checks = []
    if spec.body is not None and sent.body:
        checks.append((spec.body, json.loads(sent.body, parse_float=json_number)))  # as routing.parse_body
    if spec.query is not None:
        checks.append((spec.query, dict(parse_qsl(urlsplit(sent.url).query, keep_blank_values=True))))
    for model, payload in checks:
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            raise AssertionError(f"the documented schema allows {payload!r}, {model.__name__} refuses it: {exc}") \
                from None
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, positive_data_acceptance, ignored_auth,
          valid_data_passes_the_models]


def _config(real: dict[str, list]) -> dict:
    return {
        "generation": {"with-security-parameters": False},
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422",
                                                                      "429"]}},
        "dictionaries": {name: {"values": values} for name, values in real.items()},
        "parameters": {where: {"dictionary": name, "probability": 0.5} for name, where in REAL_VALUES},
    }


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory):
    """Hypothesis caches what it learns under ./.hypothesis; keep that out of the work tree."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def fuzz_app(primary_database_url, redis_url, tmp_path_factory):
    """A fresh app: its own database and Redis database (the login limiter and event bus live there)."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    name = (sa.engine.make_url(primary_database_url).database or "test").rsplit("/", 1)[-1].removesuffix(".db")
    database_url = fresh_database(primary_database_url, f"{name}_schemathesis", tmp)
    fuzz_redis = redis_url.rsplit("/", 1)[0] + f"/{next(_engine_numbers)}"
    redis.Redis.from_url(fuzz_redis).flushdb()
    app = build_app(database_url, fuzz_redis, tmp / "data")
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="module")
def admin(fuzz_app) -> dict:
    client = fuzz_app.test_client()
    token = login_token(client)
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    return {"id": me["id"], "headers": {"Authorization": f"Bearer {token}"}}


@pytest.fixture(scope="module")
def real(fuzz_app, admin) -> dict[str, list]:
    """A few real rows made through the API; their ids (never the fuzzer's own user id) go into the dictionaries."""
    client = fuzz_app.test_client()

    def post(url: str, body: dict) -> dict:
        response = client.post(url, json=body, headers=admin["headers"])
        assert response.status_code == 201, (url, response.get_json())
        return response.get_json()

    project = post("/api/v1/projects", {"name": "fuzz"})
    first = post("/api/v1/beads", {"project_id": project["id"], "title": "first", "tags": ["qa"]})
    second = post("/api/v1/beads", {"project_id": project["id"], "title": "second", "blocked_by": [first["id"]],
                                    "acceptance": "true"})
    blocked = post("/api/v1/beads", {"project_id": project["id"], "title": "blocked"})
    patched = client.patch(f"/api/v1/beads/{blocked['id']}", json={"status": "blocked", "reason": "fuzz"},
                           headers=admin["headers"])
    assert patched.status_code == 200, patched.get_json()
    asking = post("/api/v1/beads", {"project_id": project["id"], "title": "asks a person"})
    with fuzz_app.app_context():
        decision = escalate(asking["id"], "which way?", options=["left", "right"], actor="fuzz").to_dict()
        db.session.remove()
    post(f"/api/v1/beads/{first['id']}/comments", {"text": "a comment"})
    agent = post("/api/v1/agents", {"name": "fuzz-agent", "persona": "engineer", "project_id": project["id"]})
    provider = post("/api/v1/providers", {"name": "fuzz-provider", "endpoint": "http://127.0.0.1:9", "api_key": "sk-x"})
    user = post("/api/v1/users", {"username": "fuzz-user", "password": "password123", "role": "viewer"})
    key = post("/api/v1/auth/api-keys", {"name": "fuzz-key"})
    motivation = post("/api/v1/motivations", {"name": "fuzz-motivation", "kind": "interval", "interval_s": 3600,
                                              "persona": "engineer", "project_id": project["id"],
                                              "bead_template": {"title": "hourly check"}})
    agents = client.get(f"/api/v1/agents?project_id={project['id']}", headers=admin["headers"]).get_json()
    return {"beads": [first["id"], second["id"], blocked["id"], asking["id"]], "decisions": [decision["id"]],
            "projects": [project["id"]], "agents": [agent["id"]] + [a["id"] for a in agents["items"]][:3],
            "providers": [provider["id"]], "motivations": [motivation["id"]], "users": [user["id"]],
            "keys": [key["id"]],
            "personas": ["engineer", "qa-engineer"], "settings": ["loop.max_iterations", "dispatch.enabled"],
            "endpoints": ["http://127.0.0.1:9/v1"], "usernames": ["admin"], "passwords": [ADMIN_PASSWORD]}


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app, real):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app,
                                          config=schemathesis.Config.from_dict(_config(real)))


@pytest.fixture(scope="module")
def tally(request):
    """(operation, status class) of every answer, reported at the end of the module."""
    counts: Counter = Counter()
    started = time.monotonic()
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not counts:
        return
    operations = {label for label, _ in counts}
    succeeded = {label for label, status in counts if status == "2xx"}
    by_status: Counter = Counter()
    for (_, status), n in counts.items():
        by_status[status] += n
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\nschemathesis: {len(operations)} operations ({len(succeeded)} answered 2xx), "
                            f"{sum(counts.values())} examples {dict(sorted(by_status.items()))}, "
                            f"{time.monotonic() - started:.1f} s; never 2xx: {sorted(operations - succeeded)}")


def _targets_the_fuzzer(case, admin: dict) -> bool:
    """PATCH /users/{the fuzzer's own id} could disable or demote the account the run authenticates with (or
    change its password, which ends its token), after which every request is a 401/403 and the run tests
    nothing. Only that one account is spared; every other user id, and every other route, is fuzzed."""
    return case.method == "PATCH" and case.path == "/api/v1/users/{user_id}" \
        and case.path_parameters.get("user_id") == admin["id"]


def _bound_the_stream(case) -> None:
    """An event stream runs until the client leaves: a valid `max_seconds` (or none) becomes 0.2 s so the answer
    ends; an invalid one is left for the server to refuse."""
    query = dict(case.query or {})
    value = query.get("max_seconds")
    try:
        valid = value is None or 0 < float(value) <= 86_400
    except (TypeError, ValueError):
        valid = False
    if valid and not isinstance(value, bool):
        query["max_seconds"] = 0.2
        case.query = query


def test_every_live_operation_is_fuzzed(fuzz_schema):
    """The runs below cover the live document's operations: a new route is fuzzed without touching this file."""
    live = {f"{method.upper()} {path}" for path, item in fuzz_schema.raw_schema["paths"].items() for method in item}
    assert live == set(SPECS)
    assert {label for label, _ in RUNS} == live


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{label} {mode.value}" for label, mode in RUNS])
def test_operation_conforms(fuzz_schema, admin, tally, label, mode):
    operation = fuzz_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the live OpenAPI document"

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        assume(not _targets_the_fuzzer(case, admin))
        if SPECS[label].media_type == "text/event-stream":
            _bound_the_stream(case)
        response = case.call_and_validate(headers=admin["headers"], checks=CHECKS)
        tally[label, f"{response.status_code // 100}xx"] += 1

    run()
