"""A best-effort Redis lock around a short critical section, for work that stays correct without it.

Used where the lock only avoids wasted or duplicated work (a feed line started twice, a claim that would
fail): if Redis is unreachable, or the lock is still held after `wait_s`, the block runs unlocked and says
so in the log, and a lock whose holder died frees itself after `ttl_s`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import current_app
from redis.exceptions import LockError

log = logging.getLogger("loom.locks")
FIRST_RETRY_S, LONGEST_RETRY_S = 0.002, 0.025  # a held lock is asked for again after 2, 4, 8, 16, 25, 25... ms


@contextmanager
def best_effort_lock(name: str, ttl_s: float, wait_s: float) -> Iterator[bool]:
    """Hold the Redis lock `name` for the block (at most `ttl_s`); yields whether it is held."""
    lock, held = None, False
    try:
        lock = current_app.extensions["loom.redis"]().lock(name, timeout=ttl_s)
        held = acquire_soon(lock, wait_s)
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


def acquire_soon(lock, wait_s: float) -> bool:
    """Take `lock` within `wait_s`, asking again after a short, growing pause (redis-py's blocking acquire
    sleeps 100 ms between tries: a claim that found the project's lock held for 10 ms waited 100)."""
    deadline = time.monotonic() + wait_s
    pause = FIRST_RETRY_S
    while not lock.acquire(blocking=False):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_RETRY_S)
    return True
