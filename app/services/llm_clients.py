"""Which LLM the loop talks to, and one pooled client per provider per process."""
from __future__ import annotations

import threading
import time

from sqlalchemy import select

from app.extensions import db
from app.llm import LLMClient
from app.services.action_parser import MAX_REPLY_CHARS
from app.models import Provider
from app.services.secrets import decrypt_secret

_clients: dict[tuple, LLMClient] = {}
_lock = threading.Lock()


_settings_cache: dict[int, tuple[float, tuple]] = {}
SETTINGS_TTL_S = 5.0  # a provider added or marked down is picked up within seconds


def provider_settings(config: dict) -> tuple[str, str | None, str | None]:
    """(url, api_key, model), looked up at most every few seconds per process (see _lookup)."""
    now = time.monotonic()
    cached = _settings_cache.get(id(config))
    if cached is not None and now - cached[0] < SETTINGS_TTL_S:
        return cached[1]
    settings = _lookup(config)
    _settings_cache[id(config)] = (now, settings)
    return settings


def _lookup(config: dict) -> tuple[str, str | None, str | None]:
    """The first registered provider that is not down, else LOOM_PROVIDER_URL."""
    provider = db.session.scalar(select(Provider).where(Provider.status != "down").order_by(Provider.id).limit(1))
    if provider is not None:
        return provider.endpoint, decrypt_secret(provider.api_key), provider.model or config.get("MODEL") or None
    if not config.get("PROVIDER_URL"):
        raise LookupError("no LLM provider: set LOOM_PROVIDER_URL or register one (POST /api/v1/providers)")
    return config["PROVIDER_URL"], config.get("PROVIDER_API_KEY") or None, config.get("MODEL") or None


def client_for(url: str, api_key: str | None, model: str | None, timeout: float,
               backoff_s: float = 0.5) -> LLMClient:
    """A shared client (connection pool) for these settings; safe to use from many threads."""
    key = (url, api_key, model, timeout, backoff_s)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = LLMClient(url, api_key, model, timeout=timeout, backoff_s=backoff_s,
                                               max_reply_chars=MAX_REPLY_CHARS)
        return client
