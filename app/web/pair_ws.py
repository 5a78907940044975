"""Pair turns started over the websocket: a client sends `{"pair": {"bead_id", "message"}}` on /ws/events.

The reply reaches every viewer of the bead as bus events (`pair.started`, `pair.delta`, `pair.finished`);
only a refusal or a failure goes back to the sender alone, as `{"type": "pair.error", "data": {...}}`.
The handshake checked events:read only: the sender also needs pair:use.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from pydantic import ValidationError as PydanticError

from app.services import pair as pair_service
from app.services.errors import ServiceError
from app.web.api.pair import PairMessage, begin, check_message, llm_client, start_turn_thread

PERMISSION = "pair:use"


def _error(code: str, message: str, field: str | None = None) -> dict:
    return {"id": None, "type": "pair.error", "data": {"code": code, "message": message, "field": field}}


def start_pair(raw: object, username: str, permissions: frozenset[str], reply: Callable[[dict], None]) -> None:
    """Check the request here, then run the turn in a thread (the socket keeps streaming meanwhile)."""
    if PERMISSION not in permissions:
        reply(_error("forbidden", f"lacks the permission {PERMISSION}"))
        return
    try:
        body = PairMessage.model_validate(raw if isinstance(raw, dict) else {})
        check_message(body)
    except PydanticError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        reply(_error("invalid", f"{field}: {first.get('msg', 'invalid value')}" if field else "invalid request",
                     field))
        return
    except ServiceError as exc:
        reply(_error(exc.code, exc.message, exc.field))
        return
    app = current_app._get_current_object()

    def prepare():
        pair_service.check_pairable(body.bead_id, body.agent_id)
        llm = llm_client()
        return begin(body, username), llm

    def on_event(name: str, data: dict) -> None:
        if name == "error":
            reply(_error(data.get("code", "error"), data.get("message", ""), data.get("field")))

    start_turn_thread(app, prepare, body.message, on_event)
