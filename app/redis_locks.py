"""A best-effort Redis lock around a short critical section, for work that stays correct without it.

Used where the lock only avoids wasted or duplicated work (a feed line started twice, a claim that would
fail): if Redis is unreachable, or the lock is still held after `wait_s`, the block runs unlocked and says
so in the log, and a lock whose holder died frees itself after `ttl_s`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import current_app
from redis.exceptions import LockError

log = logging.getLogger("loom.locks")


@contextmanager
def best_effort_lock(name: str, ttl_s: float, wait_s: float) -> Iterator[bool]:
    """Hold the Redis lock `name` for the block (at most `ttl_s`); yields whether it is held."""
    lock, held = None, False
    try:
        lock = current_app.extensions["loom.redis"]().lock(name, timeout=ttl_s, blocking_timeout=wait_s)
        held = bool(lock.acquire())
        if not held:
            log.warning("lock %s not free after %s s: running unlocked", name, wait_s)
    except redis.RedisError as exc:
        log.warning("lock %s unavailable (%s): running unlocked", name, exc)
    try:
        yield held
    finally:
        if held:
            try:
                lock.release()
            except (redis.RedisError, LockError) as exc:  # expired or Redis away: its timeout frees it
                log.warning("lock %s not released: %s", name, exc)
