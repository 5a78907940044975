"""What every JSON body and query string of the API obeys: strict JSON types, no unknown fields, no NUL
characters, PATCH fields that may be left out but not nulled; and paging. The OpenAPI document says the same."""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

NO_NUL = "^[^\\x00]*$"


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


def _document_no_nul(schema: dict) -> None:
    """The documented side of `_no_nul`: every free-text field (or list item) matches NO_NUL."""
    for prop in schema.get("properties", {}).values():
        for option in prop.get("anyOf", [prop]):
            target = option.get("items", {}) if option.get("type") == "array" else option
            if target.get("type") == "string" and "pattern" not in target and "enum" not in target \
                    and "const" not in target:
                target["pattern"] = NO_NUL


def _document_body(schema: dict, model: type[Body]) -> None:
    """...and `not_null` fields are documented as optional but never null."""
    _document_no_nul(schema)
    for name in model.not_null:
        prop = schema["properties"][name]
        options = [option for option in prop.pop("anyOf") if option != {"type": "null"}]
        prop.pop("default", None)
        if len(options) == 1:
            prop.update(options[0])
        else:
            prop["anyOf"] = options


class Body(BaseModel):
    """JSON bodies: strict types (no "2" for 2), unknown fields refused, no NUL characters, and no null for
    the fields in `not_null` (PATCH fields that may be left out but have no "nothing" value)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_document_body)
    not_null: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_meant(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_null:
            raise ValueError("must not be null (leave the field out to keep its value)")
        return value

    @field_validator("*")
    @classmethod
    def _text_is_clean(cls, value: Any) -> Any:
        return _no_nul(value)

    def given(self) -> dict:
        """Only the fields the client actually sent (for PATCH)."""
        return self.model_dump(exclude_unset=True)


class Query(BaseModel):
    """Query strings: values arrive as text and are coerced; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_no_nul)

    @field_validator("*")
    @classmethod
    def _text_is_clean(cls, value: Any) -> Any:
        return _no_nul(value)


class Page(Query):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)
