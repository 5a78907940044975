"""One place where every route declares its permission, body, query, answer and summary.

`route()` registers a view on a blueprint and records a RouteSpec. The wrapper authenticates,
checks the permission, parses and validates the JSON body and query string with pydantic, and
calls the view with `body=` / `query=`. `response=` names the model of the success answer
(app/web/api/responses; none for 204). The same specs build the OpenAPI document and let tests
walk every route.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, g, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError
from werkzeug.exceptions import RequestEntityTooLarge

from app.services.errors import ServiceError, ValidationError
from app.web.security import require

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@dataclass(frozen=True)
class RouteSpec:
    endpoint: str
    rule: str  # the full Flask rule, e.g. /api/v1/beads/<id:bead_id>
    method: str
    permission: str | None
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    extra: dict = field(default_factory=dict)
    response: type[BaseModel] | None = None  # the success answer's model; None only for 204
    other_statuses: tuple[int, ...] = ()  # more statuses answering the same model (201 when a PUT creates)
    media_type: str = "application/json"  # "text/event-stream" for server-sent event streams


ROUTES: list[RouteSpec] = []


def _body_error(exc: PydanticError) -> ValidationError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or None
    message = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    return ValidationError(f"{where}: {message}" if where else message, where)


def json_number(text: str) -> int | float:
    """JSON has one number type: `2.0` is the integer 2 (as JSON Schema's `integer` says), `2.5` is not."""
    value = float(text)
    return int(value) if value.is_integer() else value


def request_body() -> bytes:
    """The body, whole. A chunked one (no Content-Length) is read up to LOOM_MAX_CONTENT_LENGTH by Werkzeug, which
    then stops without a word: one more byte of the raw input tells whether it went on (then 413, not half a
    body; a body of exactly the limit is whole)."""
    raw = request.get_data(cache=True)
    if request.content_length is None and request.max_content_length is not None \
            and len(raw) >= request.max_content_length and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def parse_body(model: type[BaseModel]) -> BaseModel:
    raw = request_body()
    if not raw.strip():
        payload: Any = {}
    else:
        try:
            payload = json.loads(raw, parse_float=json_number)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServiceError(f"request body is not valid JSON: {exc}", "body", code="bad_json") from None
        except RecursionError:  # a few KB of [[[[...]]]] is enough: refuse it, never a 500
            raise ServiceError("request body is not valid JSON: nested too deeply", "body", code="bad_json") from None
    if not isinstance(payload, dict):
        raise ValidationError("request body must be a JSON object", "body")
    try:
        return model.model_validate(payload)
    except PydanticError as exc:
        raise _body_error(exc) from None
    except RecursionError:
        raise ValidationError("request body is nested too deeply", "body") from None


def parse_query(model: type[BaseModel]) -> BaseModel:
    args = {key: request.args.get(key) for key in request.args}
    try:
        return model.model_validate(args)
    except PydanticError as exc:
        raise _body_error(exc) from None


def route(blueprint: Blueprint, rule: str, *, methods: tuple[str, ...] = ("GET",), permission: str | None,
          summary: str, tag: str, body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
          status: int = 200, response: type[BaseModel] | None = None, other_statuses: tuple[int, ...] = (),
          media_type: str = "application/json", **extra: Any) -> Callable:
    """Register a JSON route. `permission=None` marks it public (stated, not forgotten);
    `public_when="SETTING"` (in extra) makes it public while that boolean setting is on.

    `response` is the model of the `status` answer (and of `other_statuses`); every route but a 204 has one.
    A server-sent event stream says `media_type="text/event-stream"` with `response=r.EventStream`.
    """
    public_when = extra.get("public_when")

    def decorator(view: Callable) -> Callable:
        endpoint = view.__name__

        @wraps(view)
        def wrapper(**kwargs: Any):
            if not (public_when and current_app.config.get(public_when)):
                require(permission)
            if body is not None:
                kwargs["body"] = parse_body(body)
            if query is not None:
                kwargs["query"] = parse_query(query)
            return view(**kwargs)

        blueprint.add_url_rule(rule, endpoint, wrapper, methods=list(methods))
        full_rule = (blueprint.url_prefix or "") + rule
        for method in methods:
            ROUTES.append(RouteSpec(f"{blueprint.name}.{endpoint}", full_rule, method, permission, summary, tag,
                                    body, query, status, extra, response, other_statuses, media_type))
        return wrapper

    return decorator


def paged(items: list[dict], total: int, page: Any) -> dict:
    """The list shape of every collection: items, total, and the window asked for."""
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


def actor_name() -> str:
    """A label for who did something, for `created_by` / comment authors."""
    principal = g.get("principal")
    return principal.username if principal is not None else "anonymous"
