"""GET /metrics after real work (a real worker, the scripted LLM over HTTP): every value checked against
the database through the REST API, Redis and the event log; the exposition parsed strictly."""
from __future__ import annotations

import json

import re
from datetime import datetime

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app.extensions import db
from app.models import RUN_STATUSES, Agent, LLMRequest
from app.services import ralph
from app.services.metrics import KOMBU_PRIORITY_SEP, STEP_BUCKETS_S
from tests.test_engine import CHAIN_SCRIPT, Client, wait_for
from tests.celery_worker import thread_worker

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+|[+-]Inf|NaN$')


def parse(text: str) -> dict[str, list]:
    """Every line is a comment or a well-formed sample; families by name (counters without _total)."""
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict, name: str, **labels) -> float:
    """The one sample with this name and exactly these labels."""
    found = [s.value for samples in families.values() for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for samples in families.values() for s in samples if s.name == name])
    return found[0]


def api_key(api, permissions: list[str] | None = None) -> str:
    body = {"name": "metrics"} | ({"permissions": permissions} if permissions is not None else {})
    return api("post", "/auth/api-keys", json=body)["key"]


def scrape(client, key: str) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    return response.get_data(as_text=True)


def seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_metrics_need_system_read_unless_public(app, api):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "loom_00000000_" + "x" * 43}).status_code == 401
    reader = api.post("/api/v1/auth/api-keys", json={"name": "m", "permissions": ["system:read"]}).get_json()["key"]
    assert client.get("/metrics", headers={"X-API-Key": reader}).status_code == 200
    narrow = api.post("/api/v1/auth/api-keys", json={"name": "n", "permissions": ["beads:read"]}).get_json()["key"]
    refused = client.get("/metrics", headers={"X-API-Key": narrow})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    app.config["METRICS_PUBLIC"] = True
    try:
        assert client.get("/metrics").status_code == 200
    finally:
        app.config["METRICS_PUBLIC"] = False


def test_metrics_after_real_work_match_the_database(make_engine):
    engine = make_engine(CHAIN_SCRIPT, METRICS_CACHE_SECONDS=0)
    api, client = Client(engine.app), engine.app.test_client()
    key = api_key(api, ["system:read"])
    with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=4):
        project = api("post", "/projects", json={"name": "measured", "git_strategy": "branch"})
        a = api("post", "/beads", json={"project_id": project["id"], "title": "chain-A"})
        b = api("post", "/beads", json={"project_id": project["id"], "title": "chain-B", "blocked_by": [a["id"]]})
        wait_for(lambda: all(api("get", f"/beads/{x['id']}")["status"] == "closed" for x in (a, b)), timeout=90)
    # Work that stays: a decision bead (open, ready, never dispatched) and an open bead it blocks.
    decision = api("post", "/beads", json={"project_id": project["id"], "title": "pick one", "type": "decision"})
    api("post", "/beads", json={"project_id": project["id"], "title": "waits", "blocked_by": [decision["id"]]})
    families = parse(scrape(client, key))

    for status in ("open", "in_progress", "blocked", "closed"):
        assert value(families, "loom_beads", status=status) == api("get", f"/beads?status={status}")["total"]
    assert value(families, "loom_ready_beads") == api("get", "/beads/ready")["total"] == 1
    agents = api("get", "/agents?limit=200")["items"]
    for status in ("idle", "working", "paused", "complete"):
        assert value(families, "loom_agents", status=status) == sum(x["status"] == status for x in agents)
    runs = [r for x in (a, b) for r in api("get", f"/beads/{x['id']}/runs")["items"]]
    for status in RUN_STATUSES:
        assert value(families, "loom_runs", status=status) == sum(r["status"] == status for r in runs), runs
    steps = [s for x in (a, b) for s in api("get", f"/beads/{x['id']}/steps")["items"]]
    assert value(families, "loom_steps_total") == len(steps) == 6

    latencies = [s["latency_ms"] / 1000 for s in steps]
    assert value(families, "loom_step_latency_seconds_count") == len(steps)
    assert value(families, "loom_step_latency_seconds_sum") == pytest.approx(sum(latencies))
    for le in STEP_BUCKETS_S:
        assert value(families, "loom_step_latency_seconds_bucket", le=str(le)) == sum(x <= le for x in latencies)
    assert value(families, "loom_step_latency_seconds_bucket", le="+Inf") == len(steps)

    waits = [seconds(api("get", f"/beads/{x['id']}/runs")["items"][0]["started_at"], x["created_at"]) for x in (a, b)]
    assert value(families, "loom_dispatch_latency_seconds_count") == 2
    assert value(families, "loom_dispatch_latency_seconds_sum") == pytest.approx(sum(waits), abs=0.01)

    model = steps[0]["model"]
    assert model == "test-model"
    assert value(families, "loom_llm_requests_total", model=model, status="ok") == len(steps)
    assert value(families, "loom_llm_tokens_total", model=model, kind="prompt") == sum(s["prompt_tokens"]
                                                                                      for s in steps)
    assert value(families, "loom_llm_tokens_total", model=model, kind="completion") == sum(
        s["completion_tokens"] for s in steps)
    # The beads created after the worker stopped asked for a dispatch pass and feed lines: they wait (with
    # whatever the stopped worker handed back).
    queued = redis.Redis.from_url(engine.redis_url).lrange("default", 0, -1)
    waiting = [json.loads(message)["headers"]["task"] for message in queued]
    assert value(families, "loom_queue_length", queue="default") == len(waiting)
    assert "loom.dispatch" in waiting and "loom.team_event" in waiting, waiting
    assert value(families, "loom_redis_up") == 1


def test_queues_ralph_providers_and_the_cache(make_engine):
    engine = make_engine(CHAIN_SCRIPT, METRICS_CACHE_SECONDS=0, AUTO_DISPATCH=False)
    api, client = Client(engine.app), engine.app.test_client()
    key = api_key(api)
    project = api("post", "/projects", json={"name": "queued", "dedicated": True})
    queue = f"project.{project['id']}"
    celery = engine.app.extensions["celery"]
    with engine.app.app_context():  # no worker consumes these: they wait, one of them in a priority list
        celery.send_task("loom.step", args=(2_000_000,), queue=queue)
        celery.send_task("loom.step", args=(2_000_001,), queue=queue, priority=6)
        celery.send_task("loom.step", args=(2_000_002,), queue="default")
    broker = redis.Redis.from_url(engine.redis_url)
    assert broker.llen(queue) == 1 and broker.llen(f"{queue}{KOMBU_PRIORITY_SEP}6") == 1  # kombu's key naming
    families = parse(scrape(client, key))
    assert value(families, "loom_queue_length", queue=queue) == 2
    assert value(families, "loom_queue_length", queue="default") == broker.llen("default") == 1

    agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
    with engine.app.app_context():  # a zombie: working, no heartbeat, no bead
        db.session.execute(update(Agent).where(Agent.id == agent["id"]).values(status="working"))
        db.session.commit()
        summary = ralph.run_tick(engine.app.extensions["loom.redis"](), ralph.RalphSettings(zombie_seconds=0))
    assert summary["zombies"] == [agent["id"]]
    events = api("get", "/events?type=ralph.action&limit=100")["items"]
    families = parse(scrape(client, key))
    assert value(families, "loom_ralph_actions_total", kind="agent_reset") == \
        sum(e["data"]["action"] == "agent_reset" for e in events) == 1

    provider = api("post", "/providers", json={"name": "scripted", "endpoint": engine.llm.url})
    assert api("post", f"/providers/{provider['id']}/check")["status"] == "healthy"
    families = parse(scrape(client, key))
    assert value(families, "loom_provider_up", provider="scripted") == 1
    assert value(families, "loom_provider_up", provider="LOOM_PROVIDER_URL") == 0  # never checked: unknown
    assert value(families, "loom_providers_up") == 1

    engine.app.config["METRICS_CACHE_SECONDS"] = 3600
    first = scrape(client, key)
    api("post", "/beads", json={"project_id": project["id"], "title": "after the first scrape"})
    assert scrape(client, key) == first  # served from the cache: no queries
    engine.app.config["METRICS_CACHE_SECONDS"] = 0
    assert value(parse(scrape(client, key)), "loom_beads", status="open") == value(parse(first), "loom_beads",
                                                                                    status="open") + 1


def test_llm_requests_records_feed_the_llm_metrics(app, ctx, monkeypatch):
    """The llm_requests source (ready for when the loop records there): ok and failed requests, cost."""
    from app.services import metrics
    from tests.conftest import unique

    model = unique("m")
    db.session.add_all([
        LLMRequest(model=model, status="ok", prompt_tokens=10, completion_tokens=5, cost_usd=0.25),
        LLMRequest(model=model, status="ok", prompt_tokens=1, completion_tokens=2, cost_usd=0.5),
        LLMRequest(model=model, status="rate_limit"),
    ])
    db.session.commit()
    usage = {u.status: u for u in metrics.usage_from_llm_requests() if u.model == model}
    assert (usage["ok"].requests, usage["ok"].prompt_tokens, usage["ok"].completion_tokens) == (2, 11, 7)
    assert usage["ok"].cost_usd == pytest.approx(0.75) and usage["rate_limit"].requests == 1
    monkeypatch.setattr(metrics, "llm_usage", metrics.usage_from_llm_requests)
    families = parse(metrics.exposition(metrics.collect(app.extensions["loom.redis"](), app.config)).decode())
    assert value(families, "loom_llm_requests_total", model=model, status="rate_limit") == 1
    assert value(families, "loom_llm_tokens_total", model=model, kind="prompt") == 11
    assert value(families, "loom_llm_cost_usd_total", model=model) == pytest.approx(0.75)
