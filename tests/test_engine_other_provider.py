"""Pointing the engine at another OpenAI-compatible server needs no code change."""
from __future__ import annotations

from tests.celery_worker import thread_worker
from tests.fake_openai import FakeOpenAI
from tests.test_engine import Client, wait_for


def test_loop_runs_against_an_independent_server(make_engine):
    with FakeOpenAI(api_key="sk-independent-0123456789") as fake:
        engine = make_engine({"rules": []}, PROVIDER_URL=fake.url, PROVIDER_API_KEY="sk-independent-0123456789")
        api = Client(engine.app)
        with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=4):
            project = api("post", "/projects", json={"name": "elsewhere"})
            bead = api("post", "/beads", json={"project_id": project["id"], "title": "use another provider"})

            def closed():
                """the bead to close"""
                return api("get", f"/beads/{bead['id']}")["status"] == "closed"
            wait_for(closed, timeout=60)
        steps = api("get", f"/beads/{bead['id']}/steps")["items"]
        assert [s["model"] for s in steps] == ["independent-1"] * 3
        assert [r["status"] for s in steps for r in s["results"]] == ["ok", "ok", "ok"]
        assert len(fake.calls) == 3 and all(c["model"] == "independent-1" for c in fake.calls)
        assert engine.llm.requests == []  # the built-in scripted server was never asked
