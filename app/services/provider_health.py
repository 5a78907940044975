"""Provider health: a 1-token completion and `GET /models`, timed; healthy, degraded or down.

Registered providers keep their health in the database; the LOOM_PROVIDER_URL provider keeps it in
Redis. Beads are not dispatched while every provider is down, and Ralph retries provider-blocked beads
once one is healthy again.
"""
from __future__ import annotations

import json
import time

import httpx
import redis
from sqlalchemy import select

from app.extensions import db
from app.models import Provider, utcnow
from app.services.events import emit
from app.services.secrets import decrypt_secret

ENV_KEY = "loom:provider:env"
SLOW_MS = 5000


def ping(url: str, api_key: str | None, model: str | None, timeout: float = 10.0) -> dict:
    """{"status", "latency_ms", "error", "model"} from /models and a 1-token chat completion."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.perf_counter()
    listed: httpx.Response | None = None
    try:
        with httpx.Client(timeout=timeout) as http:
            listed = http.get(f"{url}/models", headers=headers)
            models = [m.get("id") for m in listed.json().get("data", []) if isinstance(m, dict)] \
                if listed.status_code == 200 else []
            model = model or (models[0] if models else None)
            answered = http.post(f"{url}/chat/completions", headers=headers, json={
                "model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]})
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return {"status": "down", "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "error": f"{type(exc).__name__}: {exc}"[:300], "model": model}
    latency = round((time.perf_counter() - started) * 1000, 1)
    if answered.status_code != 200:
        return {"status": "down", "latency_ms": latency, "model": model,
                "error": f"HTTP {answered.status_code} from /chat/completions"}
    slow_or_partial = latency > SLOW_MS or listed.status_code != 200
    return {"status": "degraded" if slow_or_partial else "healthy", "latency_ms": latency, "model": model,
            "error": None if listed.status_code == 200 else f"HTTP {listed.status_code} from /models"}


def check_registered(provider: Provider) -> dict:
    result = ping(provider.endpoint, decrypt_secret(provider.api_key), provider.model)
    changed = result["status"] != provider.status
    provider.status, provider.latency_ms, provider.last_error = result["status"], result["latency_ms"], result["error"]
    provider.last_checked_at = utcnow()
    if not provider.model and result.get("model"):
        provider.model = result["model"]
    db.session.commit()
    emit("provider.health", data={"provider_id": provider.id, "name": provider.name, **result, "changed": changed})
    return result


def check_all(config: dict, redis_client: redis.Redis) -> list[dict]:
    """Check every registered provider and the LOOM_PROVIDER_URL one; returns their results."""
    results = []
    for provider in db.session.scalars(select(Provider).order_by(Provider.id)).all():
        results.append({"name": provider.name, **check_registered(provider)})
    if config.get("PROVIDER_URL"):
        result = ping(config["PROVIDER_URL"], config.get("PROVIDER_API_KEY") or None, config.get("MODEL") or None)
        before = _env_status(redis_client)
        redis_client.set(ENV_KEY, json.dumps({**result, "ts": utcnow().isoformat()}), ex=300)
        emit("provider.health", data={"provider_id": None, "name": "LOOM_PROVIDER_URL", **result,
                                      "changed": before != result["status"]})
        results.append({"name": "LOOM_PROVIDER_URL", **result})
    return results


def _env_status(redis_client: redis.Redis) -> str:
    """The LOOM_PROVIDER_URL provider's last status ("unknown" when none is recorded or Redis cannot say)."""
    try:
        raw = redis_client.get(ENV_KEY)
        return json.loads(raw).get("status", "unknown") if raw else "unknown"
    except (redis.RedisError, ValueError, AttributeError):
        return "unknown"


def provider_available(config: dict, redis_client: redis.Redis) -> bool:
    """False only when we know every provider the loop could use is down (unknown counts as available): the
    registered ones and, as the loop falls back to it (llm_clients), the LOOM_PROVIDER_URL one."""
    registered = db.session.scalars(select(Provider.status)).all()
    if any(status != "down" for status in registered):
        return True
    if registered and not config.get("PROVIDER_URL"):
        return False
    return _env_status(redis_client) != "down"
