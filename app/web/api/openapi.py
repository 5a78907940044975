"""Build the OpenAPI 3.1 document from the route registry, so the document cannot drift from the routes."""
from __future__ import annotations

import re

from app.web.api.routing import ROUTES

_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
}


def openapi_path(rule: str) -> str:
    return _PARAM.sub(lambda m: "{" + m.group(2) + "}", rule)


def _path_params(rule: str) -> list[dict]:
    out = []
    for converter, name in _PARAM.findall(rule):
        schema = {"type": "integer", "minimum": 1} if converter in ("id", "int") else {"type": "string"}
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
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
            "responses": {
                str(spec.status): {"description": "success"},
                "4XX": {"description": "client error",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
        if spec.permission is None:
            op["security"] = []
        if spec.query is not None:
            query_schema = spec.query.model_json_schema()
            for name, prop in query_schema.get("properties", {}).items():
                op["parameters"].append({"name": name, "in": "query", "required": False, "schema": prop})
        if spec.body is not None:
            body_schema = spec.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in body_schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[spec.body.__name__] = body_schema
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{spec.body.__name__}"}}}}
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
