"""Loom's application factory: layered config, extensions, blueprints, Celery."""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis
from flask import Flask

from app import db_connections  # noqa: F401 (registers the connection listeners)
from app.bus import EventBus
from app.bus_live import EventHub
from app.commands import cli as loom_cli
from app.config import load_config
from app.extensions import celery_init_app, db, login_manager, migrate, sock
from app.logging_setup import configure_logging
from app.web import api, auth, health, metrics, ui, ws
from app.web.converters import IdConverter
from app.web.errors import register_error_handlers
from workers.dispatch import on_event as dispatch_hook
from workers.motivations import on_event as motivation_hook
from workers.team import on_event as team_hook
from workers import task_events, wake

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app. `config` is the test/override layer on top of defaults and LOOM_* env."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(load_config(config))
    app.json.sort_keys = False  # answers keep the field order the code gives them
    Path(app.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"],
                      secrets=(app.config["SECRET_KEY"], app.config["PROVIDER_API_KEY"], app.config["ADMIN_PASSWORD"]))

    app.url_map.converters["id"] = IdConverter
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "ui.login"
    sock.init_app(app)
    _init_redis(app)
    celery_init_app(app)
    wake.install(app.extensions["celery"])  # every worker of this app: the threads-pool stall workaround
    task_events.install(app.extensions["celery"])  # and task events in batches, none lost
    _register_blueprints(app)
    return app


def _init_redis(app: Flask) -> None:
    """A lazily created Redis client (no connection at start-up), shared by the process."""
    url = app.config["REDIS_URL"]

    @lru_cache(maxsize=1)
    def client() -> redis.Redis:
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)

    @lru_cache(maxsize=1)
    def bus() -> EventBus:
        return EventBus(client(), maxlen=app.config["EVENT_BUFFER"])

    @lru_cache(maxsize=1)
    def hub() -> EventHub:
        """The web process's live fan-out (its listener thread starts with the first subscriber)."""
        def pubsub_client() -> redis.Redis:
            return redis.Redis.from_url(url, socket_connect_timeout=2, socket_keepalive=True,
                                        health_check_interval=30)
        return EventHub(pubsub_client, bus(), queue_size=app.config["SUBSCRIBER_QUEUE"])

    app.extensions["loom.redis"] = client
    app.extensions["loom.bus"] = bus
    app.extensions["loom.hub"] = hub
    app.extensions.setdefault("loom.event_hooks", [])
    if app.config["AUTO_DISPATCH"]:
        app.extensions["loom.event_hooks"].append(dispatch_hook)
        app.extensions["loom.event_hooks"].append(motivation_hook)
        app.extensions["loom.event_hooks"].append(team_hook)


def _register_blueprints(app: Flask) -> None:
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(ws.bp)
    auth.init_login(app)
    register_error_handlers(app)
    app.cli.add_command(loom_cli)
