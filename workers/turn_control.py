"""The `loom_turns` remote-control command: which runs this worker is taking a turn of now. Ralph asks it about
turns whose run lock lapsed (app/services/turn_watch.py); `celery -A workers.celery_app inspect loom_turns` shows
it too."""
from __future__ import annotations

from celery.signals import worker_process_init
from celery.worker.control import inspect_command

from app.services import turn_watch


@inspect_command()
def loom_turns(state) -> dict:
    return {"runs": turn_watch.running_here()}


@worker_process_init.connect(weak=False)
def _prefork_child(**_: object) -> None:
    """A prefork child takes turns the main process (which answers for the node) knows nothing of: no notes."""
    turn_watch.disable()
