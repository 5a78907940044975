"""Loom: teams of LLM agents that claim beads, run an action loop and change a git repository.

`create_app` lives in app.factory and is imported lazily, so light entry points (the `loom` CLI)
do not load Flask, SQLAlchemy and Celery just to start.
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.factory import create_app

        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
