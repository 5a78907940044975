"""Logins that were logged out: their session cookie and their bearer token are refused from then on.

Each login gets a random session id (`sid`), kept in the session cookie and in the login's bearer token;
logging out records the sid as ended in Redis for as long as either could still be presented (a replayed
cookie or token is refused, and open event streams of that login close). Redis unreachable: a logout still
clears the browser's cookie and the check lets requests through (the cookie's own expiry still holds).
"""
from __future__ import annotations

import logging
import secrets

import redis

log = logging.getLogger("loom.auth")
ENDED_KEY = "loom:session:ended:{}"


def new_sid() -> str:
    return secrets.token_urlsafe(18)


def end(client: redis.Redis, sid: str | None, ttl_s: int) -> None:
    if not sid:
        return
    try:
        client.set(ENDED_KEY.format(sid), 1, ex=max(1, int(ttl_s)))
    except redis.RedisError as exc:
        log.warning("logout not recorded server-side (Redis unavailable: %s)", exc)


def ended(client: redis.Redis, sid: str | None) -> bool:
    if not sid:
        return False
    try:
        return bool(client.exists(ENDED_KEY.format(sid)))
    except redis.RedisError:
        return False
