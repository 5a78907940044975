"""Every default setting in one place; `LOOM_*` environment variables override them, a test mapping last."""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from beat_schedule import build_schedule

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
    "SUBSCRIBER_QUEUE": (1000, int),  # events a slow live client may lag behind before it must catch up
    "ALLOWED_ORIGINS": ("", str),  # extra origins (comma-separated) allowed to open the websocket with a cookie
    "MAX_CONCURRENT": (100, int),  # bead loops running at once, all projects
    "MAX_PER_PROJECT": (20, int),  # bead loops running at once in one project
    "MAX_ITERATIONS": (25, int),  # LLM turns per run (at most 100)
    "STEP_TIMEOUT": (300, int),  # seconds one attempt of an LLM call may take in all, however slowly it streams
    "CONTEXT_CHARS": (120_000, int),  # history sent to the LLM is trimmed to this many characters
    "COMMAND_TIMEOUT": (120, int),  # default and cap for run_command
    "LLM_RETRY_BACKOFF": (0.5, float),  # the provider client's first retry delay (doubles each retry)
    "ERROR_BACKOFF": (2.0, float),  # after a failed LLM turn the step retries in this, doubling, at most 30 s
    "RALPH_INTERVAL": (10.0, float),  # seconds between Ralph ticks
    "HEALTH_INTERVAL": (30.0, float),  # seconds between provider health checks
    "ZOMBIE_SECONDS": (300, int),  # a working agent without heartbeat for this long is reset
    "RECOVER_TRANSIENT_SECONDS": (120, int),  # provider/rate-limit blocked beads retried after this (when healthy)
    "RECOVER_AUTH_SECONDS": (7200, int),  # auth-blocked beads retried after this (budget blocks: never)
    "MAX_RESUMES": (3, int),  # Ralph resumes a run this often before reopening the bead
    "MAX_DISPATCHES": (10, int),  # a bead dispatched this often without finishing is blocked for triage
    "AUTO_DISPATCH": (True, bool),  # event hooks: dispatch, motivations, activity, notifications (API tests: off)
    "LOG_FORMAT": ("text", str),  # text (one readable line) or json (one object a line, for log shippers)
    "METRICS_PUBLIC": (False, bool),  # GET /metrics without a credential (else it needs system:read)
    "METRICS_CACHE_SECONDS": (5.0, float),  # a scrape within this of the last one gets the same text
    "WEB_WORKERS": (1, int),  # gunicorn processes (gunicorn.conf.py)
    "WEB_THREADS": (32, int),  # threads per gunicorn process: each open websocket or SSE stream holds one
    "STREAM_RECHECK_SECONDS": (10.0, float),  # an open websocket/SSE stream re-checks its login this often
    "WORKER_CONCURRENCY": (20, int),  # threads of a Celery worker (each runs one bead loop step at a time)
    # Pool threads wake the worker's event loop when a task starts and when its slot frees (the threads-pool
    # stall, celery/celery#6941: workers/wake.py). Off only to measure the engine without it.
    "WORKER_WAKE": (True, bool),
    "BROKER_POLL_SECONDS": (5.0, float),  # an idle worker re-sends its blocking read of the queues this often
    "MOTIVATIONS_INTERVAL": (30.0, float),  # seconds between motivation ticks (the shortest interval motivation)
    "CLEANUP_INTERVAL": (600.0, float),  # seconds between workspace clean-ups (worktrees no bead needs any more)
    "WORKTREE_RETENTION_SECONDS": (86_400, int),  # a closed bead's worktree is removed this long after (0: kept)
    "SANDBOX": ("auto", str),  # commands in Linux namespaces: auto (when possible), strict (or refuse), off
    "SANDBOX_NETWORK": ("none", str),  # network of sandboxed commands: none (loopback only) or host
    "SANDBOX_UID": (65534, int),  # the uid (and gid) a root worker runs sandboxed commands as
    "PAIR_HOLD_SECONDS": (3600, int),  # a bead paused for pair programming keeps its claim this long per turn
    "PAIR_WAIT_SECONDS": (10.0, float),  # a pair message waits this long for the loop's current step, then 409
    "BUDGET_COMPLETION_TOKENS": (4096, int),  # reserved per LLM call for its reply, on top of the prompt estimate
    "BUDGET_RESERVATION_SECONDS": (1800, int),  # Ralph releases a budget reservation never settled after this
    "WEBHOOK_TIMEOUT": (10.0, float),  # seconds a notification webhook receiver may take to answer
    "WEBHOOK_MAX_ATTEMPTS": (6, int),  # tries per webhook delivery before it is marked failed
    "WEBHOOK_BACKOFF": (30.0, float),  # seconds before the first retry; each next one waits 4x longer (max 6 h)
    "WEBHOOKS_INTERVAL": (15.0, float),  # seconds between Beat ticks that send webhook retries that are due
    "WEBHOOK_ALLOW_PRIVATE": (False, bool),  # webhooks may target loopback/private/link-local addresses too
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

    if isinstance(cfg["ALLOWED_ORIGINS"], str):
        cfg["ALLOWED_ORIGINS"] = [o.strip() for o in cfg["ALLOWED_ORIGINS"].split(",") if o.strip()]
    data_dir = Path(cfg["DATA_DIR"]).resolve()
    cfg["DATA_DIR"] = str(data_dir)
    if not cfg["DATABASE_URL"]:
        cfg["DATABASE_URL"] = f"sqlite:///{data_dir / 'loom.db'}"
    cfg["DATABASE_URL"] = normalise_database_url(cfg["DATABASE_URL"])
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _persistent_secret(data_dir)

    cfg.setdefault("SQLALCHEMY_DATABASE_URI", cfg["DATABASE_URL"])
    cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(cfg["SQLALCHEMY_DATABASE_URI"]))
    cfg.setdefault("CELERY", celery_settings(cfg))
    cfg.setdefault("SESSION_COOKIE_HTTPONLY", True)
    cfg.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    cfg.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": 25})  # websocket pings find dead connections
    return cfg


def celery_settings(cfg: dict) -> dict:
    """Celery: JSON only, late acks (a killed worker's task is redelivered), results off, events on.

    Time bounds nest: the LLM call's httpx timeout < soft limit < hard limit < the broker's visibility
    timeout, so a message is never handed to a second worker while the first may still run it. (The
    threads pool does not enforce Celery time limits; the httpx and per-command timeouts are what bound
    a step there, and Ralph resumes a run whose lease ran out.)
    """
    soft = cfg["STEP_TIMEOUT"] + 4 * cfg["COMMAND_TIMEOUT"]
    return {
        "broker_url": cfg["REDIS_URL"],
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 200,  # one pooled broker connection per busy thread: no connect per publish
        "broker_transport_options": {"visibility_timeout": soft + 1800},
        # A worker's consumer (only: workers/celery_app.py sets it at worker_init) waits this long (s) in each
        # blocking BRPOP before it sends it again (kombu's default: 1); a message still arrives at once. Clients
        # (web, Flower, `celery inspect`) keep 1 s: kombu blocks them that long per read of a control reply,
        # whatever timeout they asked for, and Flower's 1 s worker refresh would come back empty.
        "loom_worker_poll_seconds": cfg["BROKER_POLL_SECONDS"],
        "task_soft_time_limit": soft,
        "task_time_limit": soft + 60,
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
        # every worker knows every task
        "imports": ("workers.loop", "workers.dispatch", "workers.maintenance", "workers.motivations", "workers.team"),
        "worker_hijack_root_logger": False,
        "worker_concurrency": cfg["WORKER_CONCURRENCY"],
        "loom_worker_wake": cfg["WORKER_WAKE"],  # read by workers/wake.py
        "beat_schedule": build_schedule(cfg["RALPH_INTERVAL"], cfg["HEALTH_INTERVAL"], cfg["MOTIVATIONS_INTERVAL"],
                                       cfg["WEBHOOKS_INTERVAL"], cfg["CLEANUP_INTERVAL"]),
        "beat_schedule_filename": str(Path(cfg["DATA_DIR"]) / "celerybeat-schedule"),
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
    # prepare_threshold=None: psycopg never prepares statements server-side (by default it does after 5
    # runs of a query), so the same URL works through PgBouncer in transaction pooling, where each
    # transaction may land on another server connection that lacks the prepared statement.
    # Liveness: app/db_connections.py pings a connection that sat idle (not each checkout, as pool_pre_ping
    # would); LIFO keeps the busy few connections hot and lets the rest idle.
    return {"pool_pre_ping": False, "pool_use_lifo": True, "pool_size": 40, "max_overflow": 10, "pool_timeout": 60,
            "connect_args": {"prepare_threshold": None}}


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
