"""URL converters: `<id:name>` takes a positive 32-bit integer, anything else is a 404, never a DB error."""
from __future__ import annotations

from werkzeug.routing import BaseConverter, ValidationError

MAX_ID = 2_147_483_647


class IdConverter(BaseConverter):
    regex = r"\d{1,10}"
    part_isolating = True

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))
