"""Build the OpenAPI 3.1 document from the route registry, so the document cannot drift from the routes."""
from __future__ import annotations

import re
from http import HTTPStatus

from pydantic import BaseModel

from app.web.api.responses import ResponseJsonSchema
from app.web.api.routing import ROUTES, RouteSpec
from app.web.converters import MAX_ID

_PARAM = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
}


def openapi_path(rule: str) -> str:
    return _PARAM.sub(lambda m: "{" + m.group(3) + "}", rule)


def _path_params(rule: str) -> list[dict]:
    out = []
    for converter, args, name in _PARAM.findall(rule):
        if converter == "id":  # app/web/converters.py: a positive 32-bit integer
            schema: dict = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        elif converter == "int":
            schema = {"type": "integer", "minimum": 0}
        else:  # werkzeug's string converter: 1+ characters, at most `maxlength`
            schema = {"type": "string", "minLength": 1}
            if limit := re.search(r"maxlength=(\d+)", args):
                schema["maxLength"] = int(limit.group(1))
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _add_component(schemas: dict, name: str, schema: dict) -> None:
    """One name, one schema: two different models under one name would silently document the wrong one."""
    if schemas.setdefault(name, schema) != schema:
        raise ValueError(f"two different schemas are named {name!r} in the OpenAPI components")


def _add_model(schemas: dict, model: type[BaseModel], *, answer: bool) -> dict:
    """Put a model (and the models it uses) into the components; returns the $ref to it."""
    ref_template = "#/components/schemas/{model}"
    if answer:  # what the server sends: serialization mode, no defaults
        schema = model.model_json_schema(mode="serialization", ref_template=ref_template,
                                         schema_generator=ResponseJsonSchema)
    else:
        schema = model.model_json_schema(ref_template=ref_template)
    for name, sub in schema.pop("$defs", {}).items():
        _add_component(schemas, name, sub)
    _add_component(schemas, model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _responses(spec: RouteSpec, schemas: dict) -> dict:
    out: dict = {}
    for status in (spec.status, *spec.other_statuses):
        answer: dict = {"description": HTTPStatus(status).phrase}
        if spec.media_type == "text/event-stream":
            answer["content"] = {spec.media_type: {"schema": {
                "type": "string", "description": spec.extra.get("stream_doc") or "server-sent events: per event an "
                "`id:` line and a `data:` line holding the event JSON (see the Event schema); `: keep-alive` comments "
                "every 15 s"}}}
        elif spec.media_type == "text/csv":  # a download of rows: CSV, or (format=json) a JSON array of the model
            rows = {"type": "array", "items": _add_model(schemas, spec.response, answer=True)}
            answer["content"] = {"text/csv": {"schema": {"type": "string", "description": "a header row, then "
                                                         "one row per item (the model's keys as columns)"}},
                                 "application/json": {"schema": rows}}
        elif spec.media_type != "application/json":  # e.g. text/plain: the Prometheus exposition
            answer["content"] = {spec.media_type: {"schema": {"type": "string"}}}
        elif spec.response is not None and status != 204:
            answer["content"] = {"application/json": {"schema": _add_model(schemas, spec.response, answer=True)}}
        out[str(status)] = answer
    out["4XX"] = {"description": "client error",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


def build_openapi() -> dict:
    schemas: dict = {"Error": ERROR_SCHEMA}
    paths: dict = {}
    for spec in ROUTES:
        op: dict = {
            "operationId": spec.endpoint.replace(".", "_") + "_" + spec.method.lower(),
            "summary": spec.summary,
            "tags": [spec.tag],
            "x-permission": spec.permission,
            "parameters": _path_params(spec.rule),
            "responses": _responses(spec, schemas),
        }
        if spec.permission is None:
            op["security"] = []
        if spec.query is not None:
            query_schema = spec.query.model_json_schema()
            for name, prop in query_schema.get("properties", {}).items():
                op["parameters"].append({"name": name, "in": "query", "required": False, "schema": prop})
        if spec.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": _add_model(schemas, spec.body, answer=False)}}}
        paths.setdefault(openapi_path(spec.rule), {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loom API", "version": "1", "description": "Agent orchestration: projects, beads, "
                 "agents, personas, providers. Errors are {\"error\": {code, message, field?}}."},
        "servers": [{"url": "/"}],
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "security": [{"bearer": []}, {"apiKey": []}, {"session": []}],
        "paths": paths,
    }
