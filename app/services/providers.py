"""LLM providers: register, edit, and check health against the OpenAI-compatible `/models` route."""
from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import func, select

from app.extensions import db
from app.models import Provider
from app.models.providers import secret_hint
from app.services.provider_health import check_registered
from app.services.secrets import encrypt_secret
from app.services.errors import Conflict, NotFound, ValidationError


def get_provider(provider_id: int) -> Provider:
    provider = db.session.get(Provider, provider_id)
    if provider is None:
        raise NotFound(f"provider {provider_id} not found", "id")
    return provider


def _check_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("endpoint must be an http(s) URL, e.g. https://api.openai.com/v1", "endpoint")
    return endpoint


def create_provider(name: str, endpoint: str, *, model: str | None = None, api_key: str | None = None) -> Provider:
    name = name.strip()
    if not name:
        raise ValidationError("name must not be empty", "name")
    if db.session.scalar(select(func.count()).select_from(Provider).where(Provider.name == name)):
        raise Conflict(f"a provider named {name!r} already exists", "name", code="exists")
    provider = Provider(name=name, endpoint=_check_endpoint(endpoint), model=model or None,
                        api_key=encrypt_secret(api_key), api_key_hint=secret_hint(api_key))
    db.session.add(provider)
    db.session.commit()
    return provider


def list_providers(limit: int = 50, offset: int = 0) -> tuple[list[Provider], int]:
    total = db.session.scalar(select(func.count()).select_from(Provider))
    items = db.session.scalars(select(Provider).order_by(Provider.id).limit(limit).offset(offset)).all()
    return list(items), int(total or 0)


def update_provider(provider_id: int, changes: dict) -> Provider:
    provider = get_provider(provider_id)
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name:
            raise ValidationError("name must not be empty", "name")
        taken = select(func.count()).select_from(Provider).where(Provider.name == name, Provider.id != provider_id)
        if db.session.scalar(taken):
            raise Conflict(f"a provider named {name!r} already exists", "name", code="exists")
        provider.name = name
    if "endpoint" in changes:
        provider.endpoint = _check_endpoint(changes["endpoint"] or "")
    if "model" in changes:
        provider.model = changes["model"] or None
    if "api_key" in changes:
        provider.api_key = encrypt_secret(changes["api_key"])
        provider.api_key_hint = secret_hint(changes["api_key"])
    db.session.commit()
    return provider


def delete_provider(provider_id: int) -> None:
    db.session.delete(get_provider(provider_id))
    db.session.commit()


def check_provider(provider_id: int) -> Provider:
    """Check one provider now (a 1-token completion and /models); records status and latency."""
    provider = get_provider(provider_id)
    check_registered(provider)
    return provider
