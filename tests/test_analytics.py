"""Analytics end to end: after a scripted run on a real worker, the summary, its breakdowns, the chart series,
the paged request log and both exports agree with each other and with the recorded rows."""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import func, select

from app.extensions import db
from app.models import LLMRequest
from app.scripted_llm import ScriptedLLMServer, load_script
from app.services import analytics, pricing
from app.services.errors import ValidationError
from tests.celery_worker import thread_worker
from tests.conftest import Engine, build_app, fresh_database, login_token, unique
from tests.test_engine import Client, wait_for

MODEL = "test-model"
SCRIPT = {"model": MODEL, "rules": [
    {"match": {"title": "^alpha-2", "turn": 1}, "fault": {"status": 401, "times": 1}},  # one failed call
    {"match": {"title": "^beta", "turn": 1}, "fault": {"delay_ms": 60},
     "reply": {"notes": "slow look", "actions": [{"type": "list_files"}]}},
    {"match": {"turn": 1}, "reply": {"notes": "look", "actions": [{"type": "list_files"}]}},
    {"match": {"title": "^beta-1", "turn": 2}, "reply": {"actions": [{"type": "write_file", "path": "b.txt",
                                                                      "content": "b\n"}]}},
    {"match": {"turn": 2}, "fault": {"delay_ms": 20}, "reply": {"actions": [{"type": "done", "reason": "ok"}]}}],
    "default": {"actions": [{"type": "done", "reason": "finished"}]}}
SUMMED = ("prompt_tokens", "completion_tokens")


def nearest_rank(values: list[float], p: int) -> float | None:
    values = sorted(values)
    return values[math.ceil(p * len(values) / 100) - 1] if values else None


def expected(rows: list[dict]) -> dict:
    """What the summary must say about these rows, computed here from the rows themselves."""
    ok = [r["latency_ms"] for r in rows if r["status"] == "ok"]
    errors = sum(1 for r in rows if r["status"] not in ("ok", "budget"))
    return {"requests": len(rows), "errors": errors, "ok": len(ok),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "completion_tokens": sum(r["completion_tokens"] for r in rows),
            "tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows),
            "error_rate": errors / len(rows) if rows else 0.0,
            "latency_p50_ms": nearest_rank(ok, 50), "latency_p95_ms": nearest_rank(ok, 95)}


def assert_metrics(got: dict, rows: list[dict], what: str) -> None:
    for key, value in expected(rows).items():
        assert got[key] == value, (what, key, got[key], value)
    assert got["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), rel=1e-9, abs=1e-12), what


def all_requests(api, query: str = "") -> list[dict]:
    """Every recorded request through the paged list (small pages, so paging itself is exercised)."""
    rows, offset = [], 0
    while True:
        page = api("get", f"/analytics/requests?limit=4&offset={offset}{query}")
        rows += page["items"]
        offset += 4
        if offset >= page["total"]:
            assert len(rows) == page["total"]
            return rows


@pytest.fixture(scope="module")
def scripted_run(make_engine_module):
    """Two projects, five beads, run to the end by a real worker; one call fails with 401."""
    engine = make_engine_module(SCRIPT, ERROR_BACKOFF=0.05)
    api = Client(engine.app)
    with engine.app.app_context():
        api("put", f"/analytics/prices/{MODEL}", json={"prompt_usd_per_mtok": 3.0, "completion_usd_per_mtok": 15.0})
        alpha = api("post", "/projects", json={"name": "alpha"})
        beta = api("post", "/projects", json={"name": "beta"})
        with thread_worker(engine.app.extensions["celery"], concurrency=4):
            beads = [api("post", "/beads", json={"project_id": p["id"], "title": f"{name}-{n}"})
                     for p, name, count in ((alpha, "alpha", 3), (beta, "beta", 2)) for n in range(1, count + 1)]

            def all_closed():
                """every bead to close"""
                return all(api("get", f"/beads/{b['id']}")["status"] == "closed" for b in beads)
            wait_for(all_closed, timeout=120)
    return engine, api, {"alpha": alpha, "beta": beta}, beads


@pytest.fixture(scope="module")
def make_engine_module(primary_database_url, redis_url, tmp_path_factory):
    """`make_engine` for one module: the engine is shared by the read-only tests below."""
    made: list[Engine] = []

    def make(script: dict, **config) -> Engine:
        tmp = tmp_path_factory.mktemp("analytics-engine")
        name = (sa.engine.make_url(primary_database_url).database or "test") + "_analytics_run"
        database_url = fresh_database(primary_database_url, name, tmp)
        engine_redis = redis_url.rsplit("/", 1)[0] + "/14"
        redis.Redis.from_url(engine_redis).flushdb()
        llm = ScriptedLLMServer(load_script(script)).start()
        app = build_app(database_url, engine_redis, tmp / "data", AUTO_DISPATCH=True, PROVIDER_URL=llm.url, **config)
        made.append(Engine(app, llm, database_url, engine_redis, tmp / "data"))
        return made[-1]

    yield make
    for engine in made:
        engine.llm.stop()
        with engine.app.app_context():
            db.engine.dispose()


def test_every_call_is_recorded_and_the_totals_are_their_sum(scripted_run):
    engine, api, projects, beads = scripted_run
    with engine.app.app_context():
        rows = all_requests(api)
        assert len(rows) == len(engine.llm.requests)  # every call that reached the provider, and only those
        assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)  # newest first
        steps = sum(api("get", f"/beads/{b['id']}/steps")["total"] for b in beads)
        assert sum(1 for r in rows if r["status"] == "ok") == steps
        assert [r["status"] for r in rows].count("auth") == 1
        assert all(r["model"] == MODEL and r["priced"] and r["source"] == "loop" and r["persona"] for r in rows)
        assert all(r["cost_usd"] == pytest.approx((r["prompt_tokens"] * 3 + r["completion_tokens"] * 15) / 1e6)
                   for r in rows)
        summary = api("get", "/analytics/summary")
        assert_metrics(summary["totals"], rows, "totals")
        assert summary["totals"]["errors"] == 1 and summary["unpriced_models"] == []
        events = api("get", "/events?type=llm.request&limit=1000")["items"]
        assert sorted(e["data"]["request_id"] for e in events) == sorted(r["id"] for r in rows)


def test_exports_hold_exactly_the_recorded_rows(scripted_run):
    engine, api, projects, beads = scripted_run
    with engine.app.app_context():
        rows = sorted(all_requests(api), key=lambda r: r["id"])
        response = api.http.get("/api/v1/analytics/export?format=csv", headers=api.headers)
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        assert [int(r["id"]) for r in table] == [r["id"] for r in rows]
        for key in SUMMED:
            assert sum(int(r[key]) for r in table) == sum(r[key] for r in rows)
        assert sum(float(r["cost_usd"]) for r in table) == pytest.approx(api("get", "/analytics/summary")
                                                                         ["totals"]["cost_usd"])
        as_json = api.http.get("/api/v1/analytics/export?format=json", headers=api.headers)
        assert as_json.mimetype == "application/json" and json.loads(as_json.get_data(as_text=True)) == rows
        alpha = api.http.get(f"/api/v1/analytics/export?format=json&project_id={projects['alpha']['id']}",
                             headers=api.headers)
        assert json.loads(alpha.get_data(as_text=True)) == [r for r in rows
                                                            if r["project_id"] == projects["alpha"]["id"]]


@pytest.mark.parametrize("group_by,field", [("project", "project_id"), ("agent", "agent_id"),
                                            ("persona", "persona"), ("model", "model")])
def test_breakdowns_add_up_and_each_group_is_its_rows(scripted_run, group_by, field):
    engine, api, projects, beads = scripted_run
    with engine.app.app_context():
        rows = all_requests(api)
        summary = api("get", f"/analytics/summary?group_by={group_by}")
        by_key = defaultdict(list)
        for row in rows:
            by_key[row[field]].append(row)
        assert sorted(map(str, by_key)) == sorted(str(g["key"]) for g in summary["groups"])
        for group in summary["groups"]:
            assert_metrics(group, by_key[group["key"]], f"{group_by}={group['key']}")
        for key in ("requests", "tokens", "errors"):
            assert sum(g[key] for g in summary["groups"]) == summary["totals"][key]
        if group_by == "project":
            names = {g["key"]: g["label"] for g in summary["groups"]}
            assert names == {p["id"]: p["name"] for p in projects.values()}


def test_filters_by_project_time_status_and_persona(scripted_run):
    engine, api, projects, beads = scripted_run
    with engine.app.app_context():
        rows = all_requests(api)
        beta = projects["beta"]["id"]
        assert_metrics(api("get", f"/analytics/summary?project_id={beta}")["totals"],
                       [r for r in rows if r["project_id"] == beta], "project filter")
        assert all_requests(api, f"&project_id={beta}") == [r for r in rows if r["project_id"] == beta]
        assert [r["status"] for r in all_requests(api, "&status=auth")] == ["auth"]
        persona = rows[0]["persona"]
        assert_metrics(api("get", f"/analytics/summary?persona={persona}")["totals"],
                       [r for r in rows if r["persona"] == persona], "persona filter")
        middle = sorted(r["ts"] for r in rows)[len(rows) // 2]
        since = api("get", f"/analytics/summary?since={middle}")["totals"]
        until = api("get", f"/analytics/summary?until={middle}")["totals"]
        assert_metrics(since, [r for r in rows if r["ts"] >= middle], "since")
        assert_metrics(until, [r for r in rows if r["ts"] < middle], "until")
        assert since["requests"] + until["requests"] == len(rows)
        assert api("get", "/analytics/summary?since=1h")["totals"]["requests"] == len(rows)  # a relative span


def test_timeseries_buckets_add_up_to_the_totals(scripted_run):
    engine, api, projects, beads = scripted_run
    with engine.app.app_context():
        rows = all_requests(api)
        since = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()  # "+00:00" unencoded: read as meant
        series = api("get", f"/analytics/timeseries?bucket=minute&since={since}")
        assert series["bucket_s"] == 60 and len(series["series"]) == 1
        points = series["series"][0]["points"]
        assert len(points) in (30, 31) and all(p["t"].endswith(":00Z") for p in points)
        for key in ("requests", "errors", "tokens", "prompt_tokens"):
            assert sum(p[key] for p in points) == expected(rows)[key], key
        busy = [p for p in points if p["requests"]]
        for point in busy:  # each bucket is exactly its rows
            start = datetime.fromisoformat(point["t"].replace("Z", "+00:00"))
            inside = [r for r in rows if start <= datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
                      < start + timedelta(minutes=1)]
            assert_metrics(point, inside, point["t"])
        grouped = api("get", f"/analytics/timeseries?bucket=minute&since={since}&group_by=project")
        summary = {g["key"]: g for g in api("get", "/analytics/summary?group_by=project")["groups"]}
        assert {s["key"] for s in grouped["series"]} == set(summary)
        for line in grouped["series"]:
            assert sum(p["requests"] for p in line["points"]) == summary[line["key"]]["requests"]
            assert sum(p["cost_usd"] for p in line["points"]) == pytest.approx(summary[line["key"]]["cost_usd"])
        assert api("get", "/analytics/timeseries")["bucket_s"] == 900  # auto: 24 h in at most 120 points


# --------------------------------------------------------------------------- on the shared test database

def test_csv_export_is_safe_from_formula_injection(ctx, api, project):
    hostile = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
    for n, text in enumerate(hostile):
        analytics.record_request(model=text, persona="engineer", project_id=project["id"], error=text,
                                 prompt_tokens=n, status="provider" if n % 2 else "ok")
    response = api.get(f"/api/v1/analytics/export?format=csv&project_id={project['id']}")
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["model"] for r in table] == ["'" + text for text in hostile]
    assert [r["error"] for r in table] == ["'" + text for text in hostile]
    assert [int(r["prompt_tokens"]) for r in table] == list(range(len(hostile)))
    as_json = json.loads(api.get(f"/api/v1/analytics/export?format=json&project_id={project['id']}").get_data())
    assert [r["model"] for r in as_json] == hostile  # JSON is data, not a spreadsheet: kept as it was


def test_price_table_longest_match_wins_and_unknown_models_are_flagged(ctx, api, project):
    prefix = unique("m")
    for pattern, prompt in ((f"{prefix}*", 1.0), (f"{prefix}-mini*", 2.0), (f"{prefix}-mini-exact", 3.0)):
        response = api.put(f"/api/v1/analytics/prices/{pattern}",
                           json={"prompt_usd_per_mtok": prompt, "completion_usd_per_mtok": 0})
        assert response.status_code == 200 and response.get_json()["updated_by"] == "admin"
    assert pricing.cost_usd(f"{prefix}-large", 1_000_000, 0) == 1.0
    assert pricing.cost_usd(f"{prefix}-mini-2025", 1_000_000, 0) == 2.0
    assert pricing.cost_usd(f"{prefix}-mini-exact", 1_000_000, 0) == 3.0
    assert pricing.quote("no-such-model-" + prefix, 10, 10) == pricing.Quote(0.0, False)
    row = analytics.record_request(model="unpriced-" + prefix, project_id=project["id"], prompt_tokens=5)
    assert (row.cost_usd, row.priced) == (0.0, False)
    summary = api.get(f"/api/v1/analytics/summary?project_id={project['id']}").get_json()
    assert summary["unpriced_models"] == ["unpriced-" + prefix] and summary["totals"]["unpriced"] == 1
    listed = api.get("/api/v1/analytics/prices?limit=500").get_json()
    assert {f"{prefix}*", f"{prefix}-mini*"} <= {p["pattern"] for p in listed["items"]}
    assert api.delete(f"/api/v1/analytics/prices/{prefix}-mini*").status_code == 204
    assert pricing.cost_usd(f"{prefix}-mini-2025", 1_000_000, 0) == 1.0
    assert api.delete(f"/api/v1/analytics/prices/{prefix}-mini*").status_code == 404
    slash = api.put("/api/v1/analytics/prices/meta-llama/Llama-3*", json={"prompt_usd_per_mtok": 0.5,
                                                                         "completion_usd_per_mtok": 0.5})
    assert slash.status_code == 200 and slash.get_json()["pattern"] == "meta-llama/Llama-3*"


def test_price_changes_are_admin_only_and_validated(app, api):
    client = app.test_client()
    user = {"Authorization": f"Bearer {login_token(client, 'user', 'user-password')}"}
    body = {"prompt_usd_per_mtok": 1, "completion_usd_per_mtok": 1}
    assert client.put("/api/v1/analytics/prices/x-model", json=body, headers=user).status_code == 403
    assert client.get("/api/v1/analytics/prices", headers=user).status_code == 200
    for pattern, payload, field in [("a*b", body, "pattern"), ("has space", body, "pattern"),
                                    ("ok-model", {**body, "prompt_usd_per_mtok": -1}, "prompt_usd_per_mtok"),
                                    ("ok-model", {"prompt_usd_per_mtok": 1}, "completion_usd_per_mtok"),
                                    ("x" * 201, body, "pattern")]:
        response = api.put(f"/api/v1/analytics/prices/{pattern}", json=payload)
        assert response.status_code == 422 and response.get_json()["error"]["field"] == field, (pattern, payload)
    nan = api.put("/api/v1/analytics/prices/ok-model", data='{"prompt_usd_per_mtok": NaN, '
                  '"completion_usd_per_mtok": 1}', content_type="application/json")
    assert nan.status_code == 422 and nan.get_json()["error"]["field"] == "prompt_usd_per_mtok"


def test_default_prices_are_seeded_once_into_an_empty_table(ctx):
    saved = [(p.pattern, p.prompt_usd_per_mtok, p.completion_usd_per_mtok) for p in pricing.list_prices(1000)[0]]
    for pattern, *_ in saved:
        pricing.delete_price(pattern)
    try:
        assert pricing.seed_default_prices() == list(pricing.DEFAULT_PRICES)
        assert pricing.seed_default_prices() == []
        assert pricing.cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)
        assert pricing.cost_usd("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    finally:
        for row in pricing.list_prices(1000)[0]:
            pricing.delete_price(row.pattern)
        for pattern, prompt, completion in saved:
            pricing.set_price(pattern, prompt, completion)


def test_bad_analytics_queries_are_422_naming_the_field(api):
    for query, field in [("group_by=team", "group_by"), ("since=yesterday-ish", "since"),
                         ("until=2026-13-45", "until"), ("bucket=second", "bucket"), ("project_id=0", "project_id"),
                         ("source=elsewhere", "source"), ("format=xml", "format")]:
        path = "/api/v1/analytics/export" if field == "format" else (
            "/api/v1/analytics/timeseries" if field == "bucket" else "/api/v1/analytics/summary")
        response = api.get(f"{path}?{query}")
        assert response.status_code == 422, (query, response.get_json())
        assert response.get_json()["error"]["field"] == field, (query, response.get_json())
    too_fine = api.get("/api/v1/analytics/timeseries?bucket=minute&since=30d")
    assert too_fine.status_code == 422 and too_fine.get_json()["error"]["field"] == "bucket"
    backwards = api.get("/api/v1/analytics/timeseries?since=2026-02-01&until=2026-01-01")
    assert backwards.status_code == 422 and backwards.get_json()["error"]["field"] == "since"


@pytest.mark.parametrize("path,field,value", [
    ("/api/v1/analytics/timeseries", "until", "0001-01-01"),
    ("/api/v1/analytics/summary", "until", "0001-01-01T00:00:00+14:00"),
    ("/api/v1/analytics/requests", "since", "9999-12-31T23:59:59-14:00"),
    ("/api/v1/logs", "since", "0001-01-01T00:00:00+14:00"),
    ("/api/v1/activity", "since", "9999-12-31T23:59:59-14:00"),
    ("/api/v1/analytics/export", "since", "999999w"),  # further back than a datetime goes
])
def test_times_at_the_ends_of_the_calendar_mean_from_the_beginning_or_no_end(api, path, field, value):
    """Year 1 in +14:00 is before year 1 in UTC: the arithmetic on such times overflowed into a 500 (an HTML page
    from the CSV export). They are taken as 1970 and 9000 now: nothing Loom keeps is older or newer."""
    response = api.get(path, query_string={field: value})
    assert response.status_code == 200, (path, response.data[:200])
    assert response.is_json or response.mimetype == "text/csv"
    key = api.post("/api/v1/auth/api-keys", json={"name": "far", "expires_at": "9999-12-31T23:59:59-14:00"})
    assert key.status_code == 201 and key.get_json()["expires_at"].startswith("9000-01-01")
    garbage = api.get(path, query_string={field: "the day after"})
    assert garbage.status_code == 422 and garbage.get_json()["error"]["field"] == field


def test_record_request_refuses_an_unknown_source(ctx):
    with pytest.raises(ValidationError) as refused:
        analytics.record_request(model="m", source="elsewhere")
    assert refused.value.field == "source"
    assert not db.session.scalar(select(func.count()).select_from(LLMRequest).where(LLMRequest.source == "elsewhere"))
