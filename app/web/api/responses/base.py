"""The base of every answer model, the collection shapes `page_of()` / `list_of()`, and shared field types.

`int | Absent = None` marks a key that is sometimes left out (never sent as null).
"""
from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import GenerateJsonSchema, SkipJsonSchema

Id = Annotated[int, Field(ge=1)]
Absent = SkipJsonSchema[None]
Json = dict[str, Any]


class Response(BaseModel):
    """A JSON object answer: exactly these keys."""

    model_config = ConfigDict(extra="forbid")


class ResponseJsonSchema(GenerateJsonSchema):
    """Answers have no defaults: a key with a default is simply optional (`Absent`), not `"default": null`."""

    def default_schema(self, schema) -> dict:
        return self.generate_inner(schema["schema"])


@cache
def page_of(item: type[BaseModel]) -> type[Response]:
    """The shape `paged()` returns: one window of a collection and its total."""
    return create_model(f"{item.__name__}Page", __base__=Response, __module__=__name__,
                        items=(list[item], ...), total=(int, ...), limit=(int, ...), offset=(int, ...))


@cache
def list_of(item: type[BaseModel]) -> type[Response]:
    """A whole (small) collection: `{"items": [...], "total": N}`."""
    return create_model(f"{item.__name__}List", __base__=Response, __module__=__name__,
                        items=(list[item], ...), total=(int, ...))


class EventStream(Response):
    """Marks a server-sent event stream (documented as text/event-stream, not as a JSON object)."""


class PlainText(Response):
    """Marks a text answer in the route's own media type (the Prometheus exposition of /metrics)."""


class Ok(Response):
    ok: Literal[True]


