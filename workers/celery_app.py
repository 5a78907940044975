"""The only worker entry point: `celery -A workers.celery_app worker|beat|inspect`.

Builds the Flask app (config from LOOM_* variables) and exposes its Celery app; importing the task
modules registers their tasks.
"""
from __future__ import annotations

from app import create_app
from workers import dispatch, loop, maintenance, motivations  # noqa: F401  (importing registers the tasks)

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
app = celery_app
