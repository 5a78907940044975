"""Times in queries and bodies: ISO 8601 or a span back from now (24h), always UTC, within 1970-9000."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import BeforeValidator, Field

RELATIVE = re.compile(r"^(\d{1,6})([mhdw])$")
UNENCODED_PLUS = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:\d\d)$")  # "+01:00" sent unencoded
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: object) -> datetime:
    """ISO 8601 (a date means its UTC midnight; no zone means UTC), or a span back from now: 15m, 24h, 7d, 2w."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError("expected a time: ISO 8601 or a span like 24h")
    text = UNENCODED_PLUS.sub(r"\1+\2", value.strip())
    relative = RELATIVE.match(text)
    if relative:
        try:
            return in_utc_range(datetime.now(UTC) - timedelta(**{UNITS[relative.group(2)]: int(relative.group(1))}))
        except OverflowError:  # further back than a datetime goes (year 1): from the beginning
            return EARLIEST
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            raise ValueError("expected ISO 8601 (2026-01-31 or 2026-01-31T12:00:00Z) or a span like 15m, 24h, "
                             "7d, 2w") from None
    return in_utc_range(moment)


EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def in_utc_range(moment: datetime) -> datetime:
    """The time in UTC (no zone means UTC), brought within 1970-9000: nothing Loom keeps is older, and a time in
    year 1 or 9999 means "from the beginning" or "no end" (year 1 in +14:00 is before year 1 in UTC: the
    arithmetic on such a time overflowed into a 500)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        return EARLIEST if moment.year < 1970 else LATEST
    return min(max(moment, EARLIEST), LATEST)


When = Annotated[datetime, BeforeValidator(parse_when),
                 Field(description="ISO 8601 time or date (UTC unless a zone is given), or a span back from "
                                   "now: 15m, 24h, 7d, 2w")]
