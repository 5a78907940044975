"""Configuration layers: defaults, then LOOM_* environment, then explicit overrides."""
from __future__ import annotations

import os
import stat

from app.config import load_config


def test_layers(tmp_path):
    env = {"LOOM_DATA_DIR": str(tmp_path), "LOOM_PORT": "9000", "LOOM_LEASE_SECONDS": "60",
           "LOOM_AUTO_DISPATCH": "false"}
    cfg = load_config(environ=env)
    assert cfg["PORT"] == 9000 and cfg["LEASE_SECONDS"] == 60 and cfg["AUTO_DISPATCH"] is False
    assert cfg["DATABASE_URL"] == f"sqlite:///{tmp_path / 'loom.db'}"
    assert load_config({"PORT": 1234}, environ=env)["PORT"] == 1234


def test_postgres_urls_use_psycopg3(tmp_path):
    for given in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"):
        cfg = load_config(environ={"LOOM_DATA_DIR": str(tmp_path), "LOOM_DATABASE_URL": given})
        assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_secret_key_is_generated_once_and_private(tmp_path):
    first = load_config(environ={"LOOM_DATA_DIR": str(tmp_path)})["SECRET_KEY"]
    second = load_config(environ={"LOOM_DATA_DIR": str(tmp_path)})["SECRET_KEY"]
    assert first == second and len(first) > 40
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert load_config(environ={"LOOM_DATA_DIR": str(tmp_path), "LOOM_SECRET_KEY": "given"})["SECRET_KEY"] == "given"


def test_celery_settings_are_safe_for_crashes(tmp_path):
    celery = load_config(environ={"LOOM_DATA_DIR": str(tmp_path)})["CELERY"]
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]
    assert celery["task_serializer"] == "json" and celery["accept_content"] == ["json"]
    assert celery["task_ignore_result"] and celery["worker_send_task_events"]
    assert celery["worker_prefetch_multiplier"] == 1
    for entry in celery["beat_schedule"].values():
        assert entry["options"]["expires"] <= entry["schedule"]
    cfg = load_config(environ={"LOOM_DATA_DIR": str(tmp_path)})
    visibility = celery["broker_transport_options"]["visibility_timeout"]
    assert cfg["STEP_TIMEOUT"] < celery["task_soft_time_limit"] < celery["task_time_limit"] < visibility
