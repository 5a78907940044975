"""Budgets end to end: a real worker, the scripted LLM over HTTP, the real database and Redis.

A bead that spends is blocked (kind "budget") mid-run with spend within one call of the limit; Ralph
never recovers it; raising the budget and unblocking lets it finish. Daily limits reset at UTC midnight.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.llm import LLMClient
from app.models import Budget, BudgetReservation, LLMRequest
from app.services import analytics, beads, budgets, loop, ralph
from app.services.loop import LoopSettings
from tests.conftest import unique
from tests.test_engine import Client, wait_for
from tests.celery_worker import thread_worker

MODEL = "test-model"
SPEND_SCRIPT = {"model": MODEL, "rules": [
    {"match": {"title": "^spend", "turn": [1, 2, 3, 4, 5]}, "reply": {"notes": "one file a turn", "actions": [
        {"type": "write_file", "path": "f{turn}.txt", "content": "turn {turn}\n"}]}},
    {"match": {"title": "^spend", "turn": 6}, "reply": {"actions": [{"type": "done", "reason": "all written"}]}}],
    "default": {"actions": [{"type": "done", "reason": "nothing scripted"}]}}
PRICE = {"prompt_usd_per_mtok": 10.0, "completion_usd_per_mtok": 30.0}  # a call of ~1,200 tokens: ~$0.013


def worker(engine):
    return thread_worker(engine.app.extensions["celery"], concurrency=4)


def requests_of(api, bead_id: int) -> list[dict]:
    """The bead's recorded LLM requests, oldest first."""
    return api("get", f"/analytics/requests?bead_id={bead_id}&limit=500")["items"][::-1]


def bead_state(api, bead_id: int) -> tuple[str, str | None]:
    bead = api("get", f"/beads/{bead_id}")
    return bead["status"], bead["block_kind"]


def test_total_usd_budget_blocks_mid_run_within_one_call_and_ralph_leaves_it(make_engine):
    engine = make_engine(SPEND_SCRIPT)
    api = Client(engine.app)
    limit = 0.03
    with engine.app.app_context():
        api("put", f"/analytics/prices/{MODEL}", json=PRICE)
        project = api("post", "/projects", json={"name": "budgeted"})
        api("put", f"/projects/{project['id']}/budget", json={"total_usd": limit})
        with worker(engine):
            bead = api("post", "/beads", json={"project_id": project["id"], "title": "spend-money"})
            wait_for(lambda: bead_state(api, bead["id"]) == ("blocked", "budget"), timeout=90)

            def admin_told():
                """the admin to be notified that the budget ran out"""
                return [n for n in api("get", "/notifications?type=budget.exhausted")["items"]
                        if n["bead_id"] == bead["id"]] or None
            [told] = wait_for(admin_told, timeout=30)
            assert told["link"] == f"/beads/{bead['id']}" and "total_usd" in told["body"]

        rows = requests_of(api, bead["id"])
        ok = [r for r in rows if r["status"] == "ok"]
        assert [r["status"] for r in rows] == ["ok"] * len(ok) + ["budget"], rows
        assert 2 <= len(ok) < 5, "blocked mid-run, after some steps"  # the script needs 6 turns
        assert rows[-1]["prompt_tokens"] == rows[-1]["completion_tokens"] == 0 and rows[-1]["cost_usd"] == 0
        spent = sum(r["cost_usd"] for r in ok)
        assert all(r["priced"] and r["cost_usd"] > 0 for r in ok)
        assert spent - ok[-1]["cost_usd"] < limit <= spent  # the last call was admitted under the limit
        assert spent <= limit + max(r["cost_usd"] for r in ok)  # overshoot: at most one call

        blocked = api("get", f"/beads/{bead['id']}")
        assert "total_usd" in blocked["status_reason"] and f"${spent:.4f}" in blocked["status_reason"]
        budget = api("get", f"/projects/{project['id']}/budget")
        assert budget["spent_usd"] == pytest.approx(spent) and budget["reserved_usd"] == 0
        assert budget["reserved_tokens"] == 0 and budget["exhausted"] == ["total_usd"] and budget["exhausted_at"]
        assert budget["spent_tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in ok)
        assert db.session.scalar(select(func.count()).select_from(BudgetReservation)) == 0
        events = api("get", f"/events?project_id={project['id']}&type=budget.exhausted&limit=100")["items"]
        assert len(events) == 1 and events[0]["bead_id"] == bead["id"]
        assert events[0]["data"]["limit"] == "total_usd" and events[0]["data"]["limit_value"] == limit
        assert events[0]["data"]["spent"] == pytest.approx(spent) and events[0]["data"]["project_id"] == project["id"]
        steps = api("get", f"/beads/{bead['id']}/steps")["items"]
        assert len(steps) == len(ok)  # every LLM call was recorded, and the refused one was never made

        # Ralph with no recovery delay: a provider block is retried, the budget block never is.
        other = api("post", "/projects", json={"name": "control"})
        control = api("post", "/beads", json={"project_id": other["id"], "title": "control"})
        beads.block_bead(control["id"], "3 provider errors", kind="provider")
        summary = ralph.run_tick(engine.app.extensions["loom.redis"](),
                                 ralph.RalphSettings(recover_transient_seconds=0, recover_auth_seconds=0),
                                 now=datetime.now(UTC) + timedelta(seconds=1))
        assert control["id"] in summary["recovered"] and bead["id"] not in summary["recovered"]
        assert bead_state(api, bead["id"]) == ("blocked", "budget")
        assert api("get", f"/beads/{control['id']}")["status"] == "open"

        # Raise the budget, unblock: the bead runs again (a new run) and finishes.
        raised = api("put", f"/projects/{project['id']}/budget", json={"total_usd": 1.0})
        assert raised["exhausted"] == [] and raised["exhausted_at"] is None
        with worker(engine):
            api("post", f"/beads/{bead['id']}/unblock", json={"reason": "budget raised"})
            wait_for(lambda: bead_state(api, bead["id"])[0] == "closed", timeout=90)
        runs = api("get", f"/beads/{bead['id']}/runs")["items"]
        assert sorted(r["status"] for r in runs) == ["failed", "finished"]
        after = [r for r in requests_of(api, bead["id"]) if r["status"] == "ok"]
        assert len(after) == len(ok) + 6
        final = api("get", f"/projects/{project['id']}/budget")
        assert final["spent_usd"] == pytest.approx(sum(r["cost_usd"] for r in after))


def test_daily_token_limit_blocks_and_resets_at_utc_midnight(make_engine):
    engine = make_engine(SPEND_SCRIPT)
    api = Client(engine.app)
    limit = 2500  # a turn costs ~1,100-1,300 tokens
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "daily"})
        api("put", f"/projects/{project['id']}/budget", json={"daily_tokens": limit})
        with worker(engine):
            bead = api("post", "/beads", json={"project_id": project["id"], "title": "spend-tokens"})
            wait_for(lambda: bead_state(api, bead["id"]) == ("blocked", "budget"), timeout=90)
        first = [r for r in requests_of(api, bead["id"]) if r["status"] == "ok"]
        tokens = [r["prompt_tokens"] + r["completion_tokens"] for r in first]
        assert sum(tokens) - tokens[-1] < limit <= sum(tokens)
        assert "daily_tokens" in api("get", f"/beads/{bead['id']}")["status_reason"]
        assert api("get", f"/projects/{project['id']}/budget")["exhausted"] == ["daily_tokens"]

        # Midnight UTC: the stored day is no longer today (what the clock does at 00:00).
        yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        db.session.execute(update(Budget).where(Budget.project_id == project["id"]).values(day=yesterday))
        db.session.commit()
        fresh = api("get", f"/projects/{project['id']}/budget")
        assert (fresh["day_tokens"], fresh["exhausted"], fresh["spent_tokens"]) == (0, [], sum(tokens))
        with worker(engine):
            api("post", f"/beads/{bead['id']}/unblock", json={})
            wait_for(lambda: len(requests_of(api, bead["id"])) > len(first) + 1
                     and bead_state(api, bead["id"]) == ("blocked", "budget"), timeout=90)
        rows = requests_of(api, bead["id"])
        second = [r for r in rows[len(first) + 1:] if r["status"] == "ok"]
        spent_today = [r["prompt_tokens"] + r["completion_tokens"] for r in second]
        assert len(second) >= 2 and sum(spent_today) - spent_today[-1] < limit <= sum(spent_today)
        budget = api("get", f"/projects/{project['id']}/budget")
        assert budget["day_tokens"] == sum(spent_today) and budget["spent_tokens"] == sum(tokens) + sum(spent_today)


def test_a_redelivered_step_keeps_one_reservation_and_settles_it(make_engine):
    """A worker died between reserving and settling: the redelivered step reuses the reservation."""
    engine = make_engine(SPEND_SCRIPT, AUTO_DISPATCH=False)
    api = Client(engine.app)
    settings = LoopSettings(data_dir=str(engine.data_dir))
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "redelivery"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "spend-once"})
        api("put", f"/projects/{project['id']}/budget", json={"total_tokens": 100_000})
        api("put", f"/beads/{bead['id']}/budget", json={"total_tokens": 50_000})
        agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
        run = loop.start_run(bead["id"], agent["id"], settings)
        first = budgets.reserve(project["id"], bead["id"], f"run{run.id}.step1", 9000, 0.0)  # the dead worker's
        assert isinstance(first, budgets.Hold) and len(first.budget_ids) == 2
        for view in (api("get", f"/projects/{project['id']}/budget"), api("get", f"/beads/{bead['id']}/budget")):
            assert view["reserved_tokens"] == 9000
        assert loop.run_step(run.id, llm, settings).next_step  # the redelivery: same key, one reservation
        assert db.session.scalar(select(func.count()).select_from(BudgetReservation)) == 0
        used = db.session.scalar(select(LLMRequest.prompt_tokens + LLMRequest.completion_tokens)
                                 .where(LLMRequest.bead_id == bead["id"]))
        for view in (api("get", f"/projects/{project['id']}/budget"), api("get", f"/beads/{bead['id']}/budget")):
            assert (view["reserved_tokens"], view["spent_tokens"]) == (0, used)
        # A bead budget below what was spent blocks the next step, though the project has room.
        api("put", f"/beads/{bead['id']}/budget", json={"total_tokens": used})
        assert not loop.run_step(run.id, llm, settings).next_step
        blocked = api("get", f"/beads/{bead['id']}")
        assert blocked["block_kind"] == "budget" and f"bead {bead['id']} total_tokens" in blocked["status_reason"]
    llm.close()


def test_a_limit_filled_only_by_calls_in_flight_makes_the_step_wait_not_block(make_engine):
    engine = make_engine(SPEND_SCRIPT, AUTO_DISPATCH=False)
    api = Client(engine.app)
    settings = LoopSettings(data_dir=str(engine.data_dir))
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "in-flight"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "spend-later"})
        api("put", f"/projects/{project['id']}/budget", json={"total_tokens": 50_000})
        other = budgets.reserve(project["id"], None, "another-bead.step1", 50_000, 0.0)  # a call in flight
        agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
        run = loop.start_run(bead["id"], agent["id"], settings)
        waited = loop.run_step(run.id, llm, settings)
        assert (waited.next_step, waited.reason, waited.delay_s) == (True, "budget busy", 5.0)
        assert engine.llm.requests == [] and api("get", f"/beads/{bead['id']}")["status"] == "in_progress"
        assert api("get", f"/analytics/requests?bead_id={bead['id']}")["total"] == 0  # nothing was refused
        budgets.settle(other, 2000, 0.0)  # the other call finished, far under its estimate
        db.session.commit()
        assert loop.run_step(run.id, llm, settings).next_step
        assert len(engine.llm.requests) == 1
        assert [r["status"] for r in api("get", f"/analytics/requests?bead_id={bead['id']}")["items"]] == ["ok"]
    llm.close()


# --------------------------------------------------------------------------- the ledger, without a worker

@pytest.fixture()
def budget_project(api):
    project = api.post("/api/v1/projects", json={"name": unique("budget")}).get_json()
    return project["id"]


def test_reservations_count_against_limits_until_settled(ctx, api, budget_project):
    pid = budget_project
    api.put(f"/api/v1/projects/{pid}/budget", json={"total_tokens": 1500})
    a = budgets.reserve(pid, None, "a", 1000, 0.0)
    b = budgets.reserve(pid, None, "b", 1000, 0.0)  # 0 spent + 1000 held < 1500: admitted
    c = budgets.reserve(pid, None, "c", 1000, 0.0)  # 0 spent + 2000 held >= 1500: wait (not exhausted)
    assert isinstance(a, budgets.Hold) and isinstance(b, budgets.Hold)
    assert isinstance(c, budgets.Refusal) and not c.final and c.limit == "total_tokens"
    again = budgets.reserve(pid, None, "a", 1000, 0.0)  # the same step again: no second hold
    assert isinstance(again, budgets.Hold)
    assert api.get(f"/api/v1/projects/{pid}/budget").get_json()["reserved_tokens"] == 2000
    budgets.settle(a, 600, 0.0)
    budgets.settle(b, 700, 0.0)
    db.session.commit()
    view = api.get(f"/api/v1/projects/{pid}/budget").get_json()
    assert (view["spent_tokens"], view["reserved_tokens"], view["exhausted"]) == (1300, 0, [])
    d = budgets.reserve(pid, None, "d", 1000, 0.0)  # 1300 < 1500: admitted; it may pass the limit by one call
    assert isinstance(d, budgets.Hold)
    budgets.settle(d, 900, 0.0)
    db.session.commit()
    e = budgets.reserve(pid, None, "e", 1, 0.0)
    assert isinstance(e, budgets.Refusal) and e.final and e.spent == 2200 and e.limit_value == 1500


def test_concurrent_reservations_never_admit_past_the_limit(app, api, budget_project):
    """20 calls reserve at once against room for 4 (300 tokens each, limit 1000): the row lock serializes them."""
    pid = budget_project
    api.put(f"/api/v1/projects/{pid}/budget", json={"total_tokens": 1000})
    start = threading.Barrier(20)

    def attempt(n: int) -> bool:
        with app.app_context():
            start.wait()
            try:
                return isinstance(budgets.reserve(pid, None, f"call{n}", 300, 0.0), budgets.Hold)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(20) as pool:
        admitted = list(pool.map(attempt, range(20)))
    assert admitted.count(True) == 4  # held before each: 0, 300, 600, 900 < 1000; then 1200 refuses
    view = api.get(f"/api/v1/projects/{pid}/budget").get_json()
    assert view["reserved_tokens"] == 1200 and view["spent_tokens"] == 0


def test_day_rolls_over_at_utc_midnight(ctx, api, budget_project):
    pid = budget_project
    api.put(f"/api/v1/projects/{pid}/budget", json={"daily_usd": 1.0, "total_usd": 10.0})
    before = datetime(2031, 5, 4, 23, 59, 59, tzinfo=UTC)
    hold = budgets.reserve(pid, None, "late", 10, 0.5, now=before)
    budgets.settle(hold, 10, 1.25, now=before)
    db.session.commit()
    refused = budgets.reserve(pid, None, "later", 10, 0.5, now=before + timedelta(milliseconds=500))
    assert isinstance(refused, budgets.Refusal) and refused.final and refused.limit == "daily_usd"
    assert "daily_usd limit $1.0000 reached (spent $1.2500)" in refused.message()
    midnight = datetime(2031, 5, 5, 0, 0, 0, tzinfo=UTC)
    assert isinstance(budgets.reserve(pid, None, "next-day", 10, 0.5, now=midnight), budgets.Hold)
    row = db.session.scalar(select(Budget).where(Budget.project_id == pid))
    assert (row.day, row.day_usd, row.spent_usd) == ("2031-05-05", 0.0, 1.25)


def test_ralph_releases_reservations_that_never_settled(ctx, api, budget_project):
    pid = budget_project
    api.put(f"/api/v1/projects/{pid}/budget", json={"total_tokens": 10_000})
    now = datetime.now(UTC)
    budgets.reserve(pid, None, "dead-worker", 4000, 0.0, now=now - timedelta(hours=2))
    budgets.reserve(pid, None, "in-flight", 3000, 0.0, now=now)
    summary = ralph.run_tick(ctx.extensions["loom.redis"](), ralph.RalphSettings(reservation_seconds=1800))
    assert summary["reservations_released"] >= 1
    keys = db.session.scalars(select(BudgetReservation.key).join(Budget).where(Budget.project_id == pid)).all()
    assert keys == ["in-flight"]
    assert api.get(f"/api/v1/projects/{pid}/budget").get_json()["reserved_tokens"] == 3000


def test_budget_validation_is_422_naming_the_field(api, budget_project):
    pid = budget_project
    url = f"/api/v1/projects/{pid}/budget"
    for body, field in [({"daily_usd": -1}, "daily_usd"), ({"total_tokens": 1.5}, "total_tokens"),
                        ({"total_usd": "10"}, "total_usd"), ({"daily_tokens": -5}, "daily_tokens"),
                        ({"total_usd": 1e12}, "total_usd"), ({"bogus": 1}, "bogus")]:
        response = api.put(url, json=body)
        assert response.status_code == 422, (body, response.get_json())
        assert response.get_json()["error"]["field"] == field, (body, response.get_json())
    for raw in ('{"total_usd": NaN}', '{"daily_usd": Infinity}', '{"total_usd": 1e400}'):
        response = api.put(url, data=raw, content_type="application/json")
        assert response.status_code == 422 and response.get_json()["error"]["field"], raw
    assert api.get(url).get_json()["total_usd"] is None  # nothing was half-written
    assert api.put("/api/v1/projects/2000000000/budget", json={"total_usd": 1}).status_code == 404
    assert api.get("/api/v1/beads/2000000000/budget").status_code == 404


def test_null_clears_one_limit_and_absent_fields_stay(api, budget_project, client):
    url = f"/api/v1/projects/{budget_project}/budget"
    set_ = api.put(url, json={"daily_usd": 2.5, "total_usd": 20, "total_tokens": 5000}).get_json()
    assert (set_["daily_usd"], set_["total_usd"], set_["total_tokens"], set_["daily_tokens"]) == (2.5, 20.0, 5000, None)
    cleared = api.put(url, json={"total_usd": None}).get_json()
    assert (cleared["daily_usd"], cleared["total_usd"], cleared["total_tokens"]) == (2.5, None, 5000)
    assert cleared["updated_by"] == "admin"
    viewer = client.post("/api/v1/auth/login", json={"username": "viewer", "password": "viewer-password"}).get_json()
    headers = {"Authorization": f"Bearer {viewer['token']}"}
    assert client.get(url, headers=headers).get_json()["daily_usd"] == 2.5
    assert client.put(url, json={"daily_usd": 100}, headers=headers).status_code == 403


def test_a_new_budget_starts_from_the_recorded_spend(ctx, api, budget_project):
    analytics.record_request(model="x", project_id=budget_project, prompt_tokens=300, completion_tokens=200)
    old = datetime.now(UTC) - timedelta(days=3)
    row = analytics.record_request(model="x", project_id=budget_project, prompt_tokens=1000, completion_tokens=0)
    row.ts = old
    db.session.commit()
    before = api.get(f"/api/v1/projects/{budget_project}/budget").get_json()
    assert (before["id"], before["spent_tokens"], before["day_tokens"]) == (None, 1500, 500)
    made = api.put(f"/api/v1/projects/{budget_project}/budget", json={"total_tokens": 1000}).get_json()
    assert (made["spent_tokens"], made["day_tokens"], made["exhausted"]) == (1500, 500, ["total_tokens"])

