"""Every default setting in one place; `LOOM_*` environment variables override them, a test mapping last."""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from beat_schedule import BEAT_SCHEDULE

# name -> (default, type). Each is overridable as LOOM_<NAME>.
DEFAULTS: dict[str, tuple[Any, type]] = {
    "DATA_DIR": ("./var", str),
    "DATABASE_URL": ("", str),  # empty: SQLite file in DATA_DIR
    "REDIS_URL": ("redis://127.0.0.1:6379/0", str),
    "PROVIDER_URL": ("", str),  # empty: the built-in scripted provider
    "PROVIDER_API_KEY": ("", str),
    "MODEL": ("", str),
    "SECRET_KEY": ("", str),  # empty: generated into DATA_DIR once
    "ADMIN_PASSWORD": ("", str),  # empty: generated and printed once
    "PORT": (8080, int),
    "LOG_LEVEL": ("INFO", str),
    "LEASE_SECONDS": (300, int),  # how long a claim holds a bead before Ralph may reclaim it
    "TOKEN_TTL_SECONDS": (12 * 3600, int),  # bearer tokens from POST /auth/login
    "MAX_CONTENT_LENGTH": (2 * 1024 * 1024, int),  # request bodies
    "DEFAULT_TEAM": ("engineering-manager,engineer,qa-engineer,code-reviewer", str),
    "EVENT_BUFFER": (1000, int),  # events kept in the ring buffer
    "MAX_CONCURRENT": (100, int),  # bead loops running at once, all projects
    "MAX_PER_PROJECT": (20, int),  # bead loops running at once in one project
    "MAX_ITERATIONS": (25, int),  # LLM turns per run (at most 100)
    "STEP_TIMEOUT": (300, int),  # seconds one LLM call may take (httpx) before the step fails
    "CONTEXT_CHARS": (120_000, int),  # history sent to the LLM is trimmed to this many characters
    "COMMAND_TIMEOUT": (120, int),  # default and cap for run_command
    "AUTO_DISPATCH": (True, bool),  # events wake the dispatcher (tests of the API alone turn it off)
}


def _coerce(value: str, kind: type) -> Any:
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return kind(value)


def load_config(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> dict:
    """Build the Flask config: defaults, then LOOM_* environment, then explicit overrides."""
    env = os.environ if environ is None else environ
    cfg: dict[str, Any] = {}
    for name, (default, kind) in DEFAULTS.items():
        raw = env.get(f"LOOM_{name}")
        cfg[name] = _coerce(raw, kind) if raw not in (None, "") else default
    for key, value in (overrides or {}).items():
        cfg[key] = value

    data_dir = Path(cfg["DATA_DIR"]).resolve()
    cfg["DATA_DIR"] = str(data_dir)
    if not cfg["DATABASE_URL"]:
        cfg["DATABASE_URL"] = f"sqlite:///{data_dir / 'loom.db'}"
    cfg["DATABASE_URL"] = normalise_database_url(cfg["DATABASE_URL"])
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _persistent_secret(data_dir)

    cfg.setdefault("SQLALCHEMY_DATABASE_URI", cfg["DATABASE_URL"])
    cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(cfg["SQLALCHEMY_DATABASE_URI"]))
    cfg.setdefault("CELERY", celery_settings(cfg["REDIS_URL"]))
    cfg.setdefault("SESSION_COOKIE_HTTPONLY", True)
    cfg.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    return cfg


def celery_settings(redis_url: str) -> dict:
    """Celery: JSON only, late acks (a killed worker's task is redelivered), results off, events on."""
    return {
        "broker_url": redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 200,  # one pooled broker connection per busy thread: no connect per publish
        "broker_transport_options": {"visibility_timeout": 3600},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": "default",
        "worker_hijack_root_logger": False,
        "beat_schedule": BEAT_SCHEDULE,
        "timezone": "UTC",
    }


def normalise_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://) and use psycopg 3 for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # Threads of one web process share the file; wait for the writer instead of failing.
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # Threads (web or worker) share the pool; keep the connections instead of reopening overflow ones.
    return {"pool_pre_ping": True, "pool_size": 40, "max_overflow": 10, "pool_timeout": 60}


def _persistent_secret(data_dir: Path) -> str:
    """A random secret kept in DATA_DIR so sessions survive restarts; created with mode 0600."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
