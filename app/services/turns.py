"""Whose turn it is on a run: the per-run lock the loop and pair turns share, and a person's hold on a run.

Every turn (a loop step or a person's pair turn) runs under the Redis lock `loom:run:<id>`. The lock lives
30 s and a watchdog thread renews it while its turn runs, so a crashed holder frees the run within half a
minute. Its value names the holder ("loop", "pair" or "resume"): a loop step that finds the run busy waits
for a person (it retries shortly) but leaves a duplicate delivery of itself to the step ledger, as before.

A run with `paused_by` set is held by a person. The loop, under the lock, then parks the run instead of
taking a turn (`counters["pair.parked"]`); handing the run back enqueues the loop only if it had parked,
so there is never a second chain of steps for one run.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta

import redis
from flask import current_app
from redis.exceptions import LockError
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import Bead, Run, utcnow
from app.services.errors import ServiceError

log = logging.getLogger("loom.turns")
LOCK_TTL_S = 30.0
RENEW_EVERY_S = 10.0
MAX_HOLD_S = 3600.0  # a turn stuck longer than this loses the lock (its watchdog stops renewing it)
PERSON_KINDS = frozenset({"pair", "resume"})  # holders a loop step waits for instead of standing aside
LOOP_WAIT_S = 2.0  # how long a loop step waits for the lock before deciding
PERSON_POLL_S = 2.0  # a loop step that found a person's turn running tries again this much later
PARKED = "pair.parked"  # counters key: the loop stopped for a person and must be enqueued on hand-back


class TurnsUnavailable(ServiceError):
    status = 503
    code = "unavailable"


def lock_key(run_id: int) -> str:
    return f"loom:run:{int(run_id)}"


class RunLock:
    """`loom:run:<id>`, held by one turn at a time; safe to release from another thread than the acquirer."""

    def __init__(self, run_id: int, kind: str, client: redis.Redis | None = None, *, ttl_s: float = LOCK_TTL_S,
                 renew_every_s: float = RENEW_EVERY_S, keep_lease: LeaseKeeper | None = None) -> None:
        """`keep_lease`: also extend the run's bead lease from the watchdog while the turn lasts (its `every_s`)."""
        self.run_id, self.kind, self._renew_every_s = run_id, kind, renew_every_s
        self._keep_lease = keep_lease
        self._client = client if client is not None else current_app.extensions["loom.redis"]()
        self._lock = self._client.lock(lock_key(run_id), timeout=ttl_s, sleep=0.05, thread_local=False)
        self._stop = threading.Event()
        self.held = False
        self.unavailable = False  # Redis could not be asked

    def acquire(self, wait_s: float) -> bool:
        """True once held; False when another turn still holds it after `wait_s`, or Redis is unreachable."""
        try:
            self.held = bool(self._lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s if wait_s > 0 else None,
                                                token=f"{self.kind}:{uuid.uuid4().hex}"))
        except redis.RedisError as exc:
            log.warning("run %s: lock not taken, Redis unavailable (%s)", self.run_id, exc)
            self.unavailable = True
            return False
        if self.held:
            threading.Thread(target=self._keep_alive, name=f"run-lock-{self.run_id}", daemon=True).start()
        return self.held

    def holder(self) -> str | None:
        """The kind of turn holding the lock now ("loop", "pair", "resume"), or None."""
        try:
            value = self._client.get(lock_key(self.run_id))
        except redis.RedisError:
            return None
        if value is None:
            return None
        return (value.decode() if isinstance(value, bytes) else str(value)).split(":", 1)[0]

    def _keep_alive(self) -> None:
        started = time.monotonic()
        deadline, lease_due = started + MAX_HOLD_S, started + (self._keep_lease.every_s if self._keep_lease else 0)
        period = min(self._renew_every_s, self._keep_lease.every_s) if self._keep_lease else self._renew_every_s
        locked = True
        while not self._stop.wait(period) and time.monotonic() < deadline:
            if locked:  # first: a slow lease write must not let the lock lapse
                try:
                    self._lock.reacquire()
                except (LockError, redis.RedisError) as exc:  # lost it: the step ledger still guards the run
                    log.warning("run %s: lock renewal failed (%s)", self.run_id, exc)
                    locked = False
                    if self._keep_lease is None:
                        return
            if self._keep_lease is not None and time.monotonic() >= lease_due:  # the turn goes on: so does its lease
                self._keep_lease.extend()
                lease_due = time.monotonic() + self._keep_lease.every_s

    def release(self) -> None:
        """Idempotent; a lock that expired meanwhile is simply gone."""
        self._stop.set()
        if not self.held:
            return
        self.held = False
        try:
            self._lock.release()
        except (LockError, redis.RedisError) as exc:
            log.info("run %s: lock already gone at release (%s)", self.run_id, exc)


class LeaseKeeper:
    """Extends a running run's bead lease while one long turn lasts (commands up to LOOM_COMMAND_TIMEOUT each, an
    LLM call up to 80 % of the lease: together they can outlast the lease the turn renewed when it began, and
    Ralph would resume or reopen a bead that is still being worked on). Fenced by the run's claim, like every
    write of the loop; its own connection, from the lock's watchdog thread; every `every_s` (a third of the lease)."""

    def __init__(self, engine: Engine, run_id: int, lease_seconds: int) -> None:
        self.engine, self.run_id, self.lease_seconds = engine, run_id, lease_seconds
        self.every_s = max(1.0, lease_seconds / 3)

    def extend(self) -> bool:
        """True when the lease was extended (False: the run or its claim has ended, or the database failed)."""
        running = (Run.id == self.run_id, Run.status == "running")
        claim = (Bead.id == select(Run.bead_id).where(*running).scalar_subquery(),
                 Bead.fencing_token == select(Run.fencing_token).where(*running).scalar_subquery())
        try:
            with self.engine.begin() as conn:
                return bool(conn.execute(update(Bead).where(*claim, Bead.status == "in_progress").values(
                    lease_expires_at=utcnow() + timedelta(seconds=self.lease_seconds))).rowcount)
        except SQLAlchemyError as exc:  # the turn itself will find out; Ralph's resume is the fallback
            log.warning("run %s: lease not extended (%s)", self.run_id, exc)
            return False


def project_of(run_id: int) -> int | None:
    return db.session.scalar(select(Run.project_id).where(Run.id == run_id))


def park_if_held(run_id: int) -> bool:
    """When a person holds this running run, record that the loop stopped for them (and say so)."""
    row = db.session.execute(select(Run.status, Run.paused_by, Run.counters).where(Run.id == run_id)).first()
    if row is None or row.status != "running" or not row.paused_by:
        return False
    park(run_id, row.counters)
    return True


def park(run_id: int, counters: dict | None) -> None:
    """Record that the loop of a run a person holds has stopped for them (once)."""
    if not (counters or {}).get(PARKED):
        db.session.execute(update(Run).where(Run.id == run_id).values(counters={**(counters or {}), PARKED: True})
                           .execution_options(synchronize_session=False))
        db.session.commit()
