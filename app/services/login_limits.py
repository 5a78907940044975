"""Login attempt limits per user and per address (Redis counters over a sliding-ish fixed window)."""
from __future__ import annotations

import logging

import redis

from app.services.errors import ServiceError

log = logging.getLogger("loom.auth")


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


class LoginLimiter:
    def __init__(self, client: redis.Redis, per_user: int = 10, per_address: int = 50, window_s: int = 900):
        self.client, self.per_user, self.per_address, self.window_s = client, per_user, per_address, window_s

    def _keys(self, username: str, address: str | None) -> tuple[str, str]:
        return f"loom:login:user:{username.lower()}", f"loom:login:addr:{address or '-'}"

    def check(self, username: str, address: str | None) -> None:
        """Refuse (429) while too many recent failures are recorded for this user or address."""
        user_key, addr_key = self._keys(username, address)
        try:
            user_n, addr_n = self.client.mget(user_key, addr_key)
            ttl = max(self.client.ttl(user_key), self.client.ttl(addr_key), 1)
        except redis.RedisError as exc:  # no Redis: do not lock everyone out
            log.warning("login limiter unavailable: %s", exc)
            return
        if int(user_n or 0) >= self.per_user or int(addr_n or 0) >= self.per_address:
            raise RateLimited(f"too many failed logins; try again in {ttl} s", "username",
                              details={"retry_after": ttl})

    def failed(self, username: str, address: str | None) -> None:
        try:
            pipe = self.client.pipeline()
            for key in self._keys(username, address):
                pipe.set(key, 0, nx=True, ex=self.window_s)  # the window starts at the first failure
                pipe.incr(key)  # (SET NX EX + INCR: works on Redis 6, unlike EXPIRE ... NX)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("login limiter unavailable: %s", exc)

    def succeeded(self, username: str) -> None:
        try:
            self.client.delete(self._keys(username, None)[0])
        except redis.RedisError:
            pass
