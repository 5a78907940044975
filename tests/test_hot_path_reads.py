"""What every loop step reads without a round trip each time: runtime settings, model prices and the event types
motivations listen to are cached per app for a second (app/services/table_cache.py), and a pooled PostgreSQL
connection is pinged only after it sat idle (app/db_connections.py).

A second app on the same database stands for another process (the web server, another worker): its changes
reach this app within the cache's second; this app's own changes are seen at once.
"""
from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from app.config import engine_options, normalise_database_url
from app.db_connections import PING_AFTER_IDLE_S
from app.extensions import db
from app.services import motivations, pricing, settings, table_cache
from app.services.motivations import EVENT_TYPES
from tests.conftest import build_app, unique
from workers.motivations import _wanted


@pytest.fixture()
def other(primary_database_url, redis_url, tmp_path):
    """Another app (its own cache) on the same database."""
    second = build_app(primary_database_url, redis_url, tmp_path / "other-data")
    yield second
    with second.app_context():
        db.engine.dispose()


def seen_within(read, expected, seconds: float) -> float:
    """Seconds until read() == expected (fails after `seconds`)."""
    started = time.monotonic()
    while read() != expected:
        assert time.monotonic() - started < seconds, f"still {read()!r}, not {expected!r}, after {seconds} s"
        time.sleep(0.05)
        db.session.rollback()
    return time.monotonic() - started


def test_a_setting_changed_here_is_seen_at_once_and_from_elsewhere_within_a_second(app, other):
    with app.app_context():
        settings.set_setting("lease_seconds", 601, "test")
        assert settings.get_setting("lease_seconds", 300) == 601  # our own change: no waiting
        with other.app_context():
            settings.set_setting("lease_seconds", 602, "test")
        assert settings.get_setting("lease_seconds", 300) == 601  # cached: no query for a second
        seen_within(lambda: settings.get_setting("lease_seconds", 300), 602, table_cache.TTL_S + 1)
        db.session.delete(db.session.get(settings.ConfigKV, "lease_seconds"))
        db.session.commit()
        assert settings.get_setting("lease_seconds", 300) == 300


def test_a_price_changed_elsewhere_prices_calls_within_a_second(app, other):
    model = unique("hot-model")
    with app.app_context():
        assert pricing.cost_usd(model, 1_000_000, 0) == 0.0
        pricing.set_price(model, 4.0, 0.0, actor="test")
        assert pricing.cost_usd(model, 1_000_000, 0) == 4.0
        with other.app_context():
            pricing.set_price(model, 5.0, 0.0, actor="test")
        seen_within(lambda: pricing.cost_usd(model, 1_000_000, 0), 5.0, table_cache.TTL_S + 1)
        with other.app_context():
            pricing.delete_price(model)
        seen_within(lambda: pricing.cost_usd(model, 1_000_000, 0), 0.0, table_cache.TTL_S + 1)


def test_an_event_motivation_made_here_hears_events_at_once_and_one_disabled_elsewhere_stops(app, other):
    with app.app_context():
        quiet = [t for t in EVENT_TYPES if not _wanted(t)]
        assert quiet, "every event type has a motivation already"
        event_type = quiet[0]
        made = motivations.create_motivation({"name": unique("hot"), "kind": "event", "event": event_type,
                                              "persona": "qa-engineer", "bead_template": {"title": "T {date}"}})
        assert _wanted(event_type)  # the flush that made it emptied this app's cache
        made_id = made.id
        with other.app_context():
            motivations.update_motivation(made_id, {"enabled": False})
        assert _wanted(event_type)  # this app has not asked the database again yet
        seen_within(lambda: _wanted(event_type), False, table_cache.TTL_S + 1)


@pytest.mark.needs_postgres
def test_an_idle_pooled_connection_that_died_is_replaced_and_a_busy_one_is_not_pinged(primary_database_url):
    url = normalise_database_url(primary_database_url)
    engine = sa.create_engine(url, **{**engine_options(url), "pool_size": 1, "max_overflow": 0})
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    pid_of = sa.text("SELECT pg_backend_pid()")

    def kill(pid: int) -> None:
        with psycopg.connect(raw, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)  # the backend is gone before the pool is asked again

    try:
        with engine.connect() as conn:
            first = conn.execute(pid_of).scalar()
        kill(first)
        time.sleep(PING_AFTER_IDLE_S)  # idle: the checkout pings, finds it dead and connects afresh
        with engine.connect() as conn:
            second = conn.execute(pid_of).scalar()
        assert second != first

        kill(second)  # checked in a moment ago: handed out unpinged, its first statement fails ...
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(pid_of)
        with engine.connect() as conn:  # ... and the pool has been recycled for the next caller
            assert conn.execute(pid_of).scalar() not in (first, second)
    finally:
        engine.dispose()
