"""JSON routes for LLM providers. API keys are write-only: answers show them masked."""
from __future__ import annotations

from app.services import providers as service
from app.web.api import responses as r
from app.web.api import schemas as s
from app.web.api.routing import bp, paged, route

ONE = "/providers/<id:provider_id>"


@route(bp, "/providers", permission="providers:read", summary="List providers", tag="providers", query=s.Page,
       response=r.page_of(r.Provider))
def list_providers(query: s.Page):
    items, total = service.list_providers(query.limit, query.offset)
    return paged([p.to_dict() for p in items], total, query)


@route(bp, "/providers", methods=("POST",), permission="providers:write", status=201, tag="providers",
       summary="Register an OpenAI-compatible provider", body=s.ProviderCreate, response=r.Provider)
def create_provider(body: s.ProviderCreate):
    provider = service.create_provider(body.name, body.endpoint, model=body.model, api_key=body.api_key)
    return provider.to_dict(), 201


@route(bp, ONE, permission="providers:read", summary="Get a provider", tag="providers", response=r.Provider)
def get_provider(provider_id: int):
    return service.get_provider(provider_id).to_dict()


@route(bp, ONE, methods=("PATCH",), permission="providers:write", summary="Update a provider", tag="providers",
       body=s.ProviderUpdate, response=r.Provider)
def update_provider(provider_id: int, body: s.ProviderUpdate):
    return service.update_provider(provider_id, body.given()).to_dict()


@route(bp, ONE, methods=("DELETE",), permission="providers:write", status=204, summary="Delete a provider",
       tag="providers")
def delete_provider(provider_id: int):
    service.delete_provider(provider_id)
    return "", 204


@route(bp, ONE + "/check", methods=("POST",), permission="providers:write", tag="providers",
       summary="Check a provider now (GET /models; records status and latency)", response=r.Provider)
def check_provider(provider_id: int):
    return service.check_provider(provider_id).to_dict()
