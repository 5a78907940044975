"""Which providers count for dispatch: the loop uses the first registered provider that is not down and falls
back to LOOM_PROVIDER_URL (app/services/llm_clients.py), so dispatch stops only when all of those are down.
Real health checks (app/services/provider_health.py: /models and a 1-token completion) against the scripted
LLM over HTTP and against a port nothing listens on."""
from __future__ import annotations

from flask import current_app

from app.extensions import db
from app.services import provider_health
from tests.celery_worker import thread_worker
from tests.conftest import free_port
from tests.test_engine import Client, wait_for

DONE = {"default": {"actions": [{"type": "done", "reason": "ok"}]}}


def checked(api) -> dict[str, str]:
    """Every provider checked now, as the beat's health task does; name -> status."""
    results = provider_health.check_all(current_app.config, current_app.extensions["loom.redis"]())
    db.session.commit()
    return {r["name"]: r["status"] for r in results}


def test_a_registered_provider_that_is_down_leaves_the_configured_one_working(make_engine):
    engine = make_engine(DONE)
    api = Client(engine.app)
    with engine.app.app_context():
        api("post", "/providers", json={"name": "unreachable", "endpoint": f"http://127.0.0.1:{free_port()}/v1"})
        assert checked(api) == {"unreachable": "down", "LOOM_PROVIDER_URL": "healthy"}
        assert provider_health.provider_available(current_app.config, current_app.extensions["loom.redis"]())
        with thread_worker(engine.app.extensions["celery"], concurrency=4):
            project = api("post", "/projects", json={"name": "one-provider-down"})
            bead = api("post", "/beads", json={"project_id": project["id"], "title": "still runs"})

            def closed():
                """the bead to close through the healthy provider"""
                return api("get", f"/beads/{bead['id']}")["status"] == "closed"
            wait_for(closed, timeout=60)
        assert engine.llm.requests, "the configured provider answered the bead's turn"


def test_dispatch_waits_only_when_every_usable_provider_is_down(make_engine):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    engine = make_engine(DONE, PROVIDER_URL=dead, AUTO_DISPATCH=False)
    api = Client(engine.app)
    with engine.app.app_context():
        redis_client = current_app.extensions["loom.redis"]()
        assert provider_health.provider_available(current_app.config, redis_client)  # not checked yet: unknown
        assert checked(api) == {"LOOM_PROVIDER_URL": "down"}
        assert not provider_health.provider_available(current_app.config, redis_client)
        registered = api("post", "/providers", json={"name": "also-down", "endpoint": dead})
        assert checked(api) == {"also-down": "down", "LOOM_PROVIDER_URL": "down"}
        assert not provider_health.provider_available(current_app.config, redis_client)
        api("patch", f"/providers/{registered['id']}", json={"endpoint": engine.llm.url})
        assert checked(api)["also-down"] == "healthy"
        assert provider_health.provider_available(current_app.config, redis_client)
        current_app.config["PROVIDER_URL"] = ""  # registered providers only: all of them down means none
        api("patch", f"/providers/{registered['id']}", json={"endpoint": dead})
        checked(api)
        assert not provider_health.provider_available(current_app.config, redis_client)
