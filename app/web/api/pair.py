"""Pair programming over HTTP: `POST /pair` streams one turn as server-sent events; pause, hand back, transcript.

Everything that can be refused (bad body, unknown bead, closed bead, a loop mid-step) is answered as a
4xx JSON error before the stream starts. The turn then runs in a thread of this process with its own
database session; the request only relays its events (no connection held while the LLM answers).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Annotated

from flask import Flask, Response, current_app
from kombu.exceptions import OperationalError as BrokerUnavailable
from pydantic import Field

from app.extensions import db
from app.llm import LLMClient
from app.services import llm_clients
from app.services import pair as pair_service
from app.services.errors import ServiceError, ValidationError
from app.services.pair import PairTurn
from app.services.pair_turn import take_turn
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.responses.pair import PairResumed, PairState, PairTranscript
from app.web.api.routing import actor_name, bp, route
from workers.loop import enqueue_step, loop_settings

log = logging.getLogger("loom.pair")
ONE = "/beads/<id:bead_id>"
KEEPALIVE_S = 15.0
_END = object()


class PairMessage(s.Body):
    bead_id: s.Id | None = None
    agent_id: s.Id | None = None
    message: Annotated[str, Field(min_length=1, max_length=20_000)]


class NoProvider(ServiceError):
    status = 503
    code = "no_provider"


def check_message(body: PairMessage) -> None:
    if (body.bead_id is None) == (body.agent_id is None):
        raise ValidationError("give exactly one of bead_id or agent_id", "bead_id")
    if not body.message.strip():
        raise ValidationError("message is empty", "message")


def llm_client() -> LLMClient:
    cfg = current_app.config
    try:
        url, api_key, model = llm_clients.provider_settings(cfg)
    except LookupError as exc:
        raise NoProvider(str(exc)) from None
    return llm_clients.client_for(url, api_key, model, float(cfg["STEP_TIMEOUT"]), cfg["LLM_RETRY_BACKOFF"])


def begin(body: PairMessage, user: str) -> PairTurn:
    cfg = current_app.config
    return pair_service.begin_turn(body.bead_id, body.agent_id, user, loop_settings(), cfg["PAIR_HOLD_SECONDS"],
                                   float(cfg["PAIR_WAIT_SECONDS"]))


def start_turn_thread(app: Flask, prepare: Callable[[], tuple[PairTurn, LLMClient]], message: str,
                      on_event: Callable[[str, dict], None], on_end: Callable[[], None] = lambda: None
                      ) -> threading.Thread:
    """Run a pair turn in a thread with its own app context. `prepare` returns the begun turn (whose lock the
    thread releases) and the LLM client; refusals it raises become `error` events."""
    def run() -> None:
        with app.app_context():
            try:
                turn, llm = prepare()
                take_turn(turn, message, llm, loop_settings(), app.config["PAIR_HOLD_SECONDS"], on_event)
            except ServiceError as exc:
                on_event("error", {"code": exc.code, "message": exc.message, "field": exc.field})
            except Exception:  # noqa: BLE001 (the stream must end with an error, never hang)
                log.exception("pair turn failed")
                on_event("error", {"code": "internal", "message": "the pair turn failed; see the server log"})
            finally:
                db.session.remove()
                on_end()

    thread = threading.Thread(target=run, name="pair-turn", daemon=True)
    thread.start()
    return thread


def _sse(events: queue.SimpleQueue) -> Iterator[str]:
    yield ": pair turn started\n\n"
    while True:
        try:
            item = events.get(timeout=KEEPALIVE_S)
        except queue.Empty:
            yield ": keep-alive\n\n"
            continue
        if item is _END:
            return
        name, data = item
        yield f"event: {name}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


@route(bp, "/pair", methods=("POST",), permission="pair:use", tag="pair", body=PairMessage,
       summary="Pair programming: send the agent on a bead (or the bead an agent holds) a message; the reply "
               "streams as server-sent events `chunk` {text}, `actions` {results}, `done` {step} or `error`",
       response=r.EventStream, media_type="text/event-stream",
       stream_doc="server-sent events: `event: chunk` {text} as the reply streams, `event: actions` {results, "
                  "actions} once they ran, then `event: done` {step} or `event: error` {code, message, field?}")
def pair(body: PairMessage):
    check_message(body)
    pair_service.check_pairable(body.bead_id, body.agent_id)
    llm = llm_client()
    turn = begin(body, actor_name())
    events: queue.SimpleQueue = queue.SimpleQueue()
    db.session.commit()  # no transaction (nor pooled connection) held while streaming; the thread has its own
    try:
        start_turn_thread(current_app._get_current_object(), lambda: (turn, llm), body.message,
                          lambda name, data: events.put((name, data)), lambda: events.put(_END))
    except RuntimeError:  # no thread could be started: free the run at once
        turn.lock.release()
        raise
    return Response(_sse(events), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@route(bp, ONE + "/pause", methods=("POST",), permission="pair:use", tag="pair",
       summary="Pause the bead's loop for pair programming: it finishes its current step and waits",
       response=PairState)
def pause_bead(bead_id: int):
    pair_service.pause(bead_id, actor_name(), current_app.config["PAIR_HOLD_SECONDS"])
    return pair_service.state(bead_id)


@route(bp, ONE + "/resume", methods=("POST",), permission="pair:use", tag="pair",
       summary="Hand a paused bead back to its loop (the loop takes its next turn)", response=PairResumed)
def resume_bead(bead_id: int):
    run, enqueue = pair_service.resume(bead_id, actor_name(), current_app.config["LEASE_SECONDS"])
    if enqueue:
        try:
            enqueue_step(run.id, run.project_id)
        except BrokerUnavailable as exc:  # handed back all the same: Ralph resumes the run once its lease ends
            log.error("run %s handed back but its next step was not enqueued: %s", run.id, exc)
            enqueue = False
    return {**pair_service.state(bead_id), "loop_enqueued": enqueue}


@route(bp, ONE + "/pair", permission="beads:read", tag="pair", query=s.Page,
       summary="The bead's pair-programming transcript (pair turns, oldest first) and whether its loop is paused",
       response=PairTranscript)
def pair_transcript(bead_id: int, query: s.Page):
    return pair_service.transcript(bead_id, query.limit, query.offset)
