"""Loop turns whose worker died in the middle (kill -9, the OOM killer, a machine gone).

A loop turn run by a Celery worker, holding its run's lock (app/services/turns.py: renewed every 10 s, lapsing
30 s after its holder stops), notes itself in the Redis hash `loom:turns:in_flight` (run id -> its step, when it
began, the worker's node name and pid) and in its worker process's memory; it removes both when it ends. Ralph
judges the notes whose lock has lapsed: it asks their workers which turns they are taking now (the `loom_turns`
remote-control command, workers/turn_control.py). A turn its worker does not name (the worker is gone, or is a new
process under the same name) is dead, and Ralph ends the bead's lease at once (app/services/ralph.py:
end_leases_of_dead_turns): the run resumes from its last applied step about 40 s after the kill, instead of when
the whole lease (LOOM_LEASE_SECONDS, 300 s) runs out. A turn that lost its lock while Redis was away, its worker
still taking it, is left alone.

Only a shortcut: without Redis or the broker, in a prefork child (notes are left out there: the main process
answers for the node), or with a note lost, the lease still runs out as before.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

import redis
from flask import current_app

from app.services.turns import lock_key

log = logging.getLogger("loom.turns")
IN_FLIGHT_KEY = "loom:turns:in_flight"
MIN_AGE_S = 5.0  # a note younger than this is never judged (its turn took the lock a moment ago)
ASK_WORKER_S = 1.0  # how long Ralph waits for the workers of lapsed turns to answer
COMMAND = "loom_turns"  # the remote-control command a worker answers with its turns (workers/turn_control.py)
_here: set[int] = set()  # runs whose turn this process is taking
_here_lock = threading.Lock()
_enabled = True


@dataclass(frozen=True)
class Turn:
    run_id: int
    seq: int
    node: str  # the Celery worker's node name
    pid: int
    at: float  # when the turn began (unix time)
    note: str  # as stored (removed only if unchanged)


def disable() -> None:
    """No notes from this process (a prefork child: its node's main process could not answer for it)."""
    global _enabled
    _enabled = False


def running_here() -> list[int]:
    with _here_lock:
        return sorted(_here)


def _celery_node() -> str | None:
    from celery import current_task  # the loop also runs in-process (tests, the bench): then there is no node
    if not _enabled or not current_task:
        return None
    return getattr(current_task.request, "hostname", None)


def note_turn(run_id: int, seq: int) -> None:
    """This worker is taking step `seq` of the run, under the run's lock."""
    node = _celery_node()
    if not node:
        return
    note = json.dumps({"seq": seq, "at": round(time.time(), 3), "node": node, "pid": os.getpid()})
    with _here_lock:
        _here.add(run_id)
    try:
        current_app.extensions["loom.redis"]().hset(IN_FLIGHT_KEY, str(run_id), note)
    except redis.RedisError as exc:
        log.debug("run %s: turn not noted (%s)", run_id, exc)


def end_turn(run_id: int) -> None:
    if not _celery_node():
        return
    with _here_lock:
        _here.discard(run_id)
    try:
        current_app.extensions["loom.redis"]().hdel(IN_FLIGHT_KEY, str(run_id))
    except redis.RedisError as exc:
        log.debug("run %s: turn note not removed (%s)", run_id, exc)


def lapsed_turns(client: redis.Redis, now: float | None = None) -> list[Turn]:
    """Noted turns whose run lock is gone: their holder died, lost the lock, or ended without removing its note
    (the caller checks the run did not get past that step, and asks the worker)."""
    now = time.time() if now is None else now
    old = []
    for raw_run, raw_note in client.hgetall(IN_FLIGHT_KEY).items():
        note = raw_note.decode() if isinstance(raw_note, bytes) else str(raw_note)
        try:
            fields = json.loads(note)
            turn = Turn(int(raw_run), int(fields["seq"]), str(fields["node"]), int(fields["pid"]),
                        float(fields["at"]), note)
        except (ValueError, TypeError, KeyError):  # not ours: drop it
            client.hdel(IN_FLIGHT_KEY, raw_run)
            continue
        if now - turn.at >= MIN_AGE_S:
            old.append(turn)
    if not old:
        return []
    pipe = client.pipeline(transaction=False)
    for turn in old:
        pipe.exists(lock_key(turn.run_id))
    return [turn for turn, locked in zip(old, pipe.execute(), strict=True) if not locked]


def turns_of(celery_app, nodes: set[str], timeout_s: float = ASK_WORKER_S) -> dict[str, set[int]] | None:
    """The runs each of these workers is taking a turn of now, by node (one question for all, waiting at most
    `timeout_s`); a node that does not answer is missing. None when the broker could not be asked."""
    try:
        replies = celery_app.control.broadcast(COMMAND, destination=sorted(nodes), reply=True,
                                               timeout=timeout_s) or []
    except Exception as exc:  # noqa: BLE001 (the broker away: nothing can be judged)
        log.warning("workers %s not asked about their turns (%s)", ", ".join(sorted(nodes)), exc)
        return None
    answers: dict[str, set[int]] = {}
    for reply in replies:
        for node, answer in (reply.items() if isinstance(reply, dict) else ()):
            runs = answer.get("runs") if isinstance(answer, dict) else None
            answers[node] = {run for run in runs if isinstance(run, int)} if isinstance(runs, list) else set()
    return answers


_FORGET = "if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('hdel', KEYS[1], ARGV[1]) end " \
          "return 0"


def forget(client: redis.Redis, turn: Turn) -> None:
    """Remove a judged note, unless a new turn of the run has noted itself since."""
    client.eval(_FORGET, 1, IN_FLIGHT_KEY, str(turn.run_id), turn.note)
