"""Five-field cron expressions in UTC: parse, match a minute, find the last and next due minute."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
MONTHS = {name: n for n, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
WEEKDAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
          "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
SEARCH_DAYS = 366 * 5  # `next_due` looks this far ahead (covers 29 February)


class CronError(ValueError):
    """A malformed expression; the message names the field."""


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday (7 is folded into 0)
    any_day: bool  # day of month was `*`
    any_weekday: bool  # day of week was `*`

    def day_matches(self, moment: datetime) -> bool:
        """Vixie cron's rule: when both day fields are restricted, either one matching is enough."""
        if moment.month not in self.months:
            return False
        dom = moment.day in self.days
        dow = (moment.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def matches(self, moment: datetime) -> bool:
        return moment.minute in self.minutes and moment.hour in self.hours and self.day_matches(moment)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{name}: {number} is outside {low}-{high}")
    return number


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    names = MONTHS if name == "month" else WEEKDAYS if name == "day of week" else {}
    out: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty list item")
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _value(first, name, low, high, names), _value(last, name, low, high, names)
            if start > end:
                raise CronError(f"{name}: range {span!r} runs backwards")
        else:
            start = _value(span, name, low, high, names)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return frozenset(out)


def parse(expression: str) -> Cron:
    """Parse `m h dom mon dow` (numbers, names, `*`, ranges, lists, `/steps`) or an @macro."""
    text = " ".join(str(expression).split())
    parts = MACROS.get(text.lower(), text).split(" ")
    if len(parts) != 5:
        raise CronError(f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
                        f"not {len(parts)}")
    values = [_field(part, name, low, high) for part, (name, low, high) in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(text, values[0], values[1], values[2], values[3], weekdays,
                any_day=parts[2].startswith("*"), any_weekday=parts[4].startswith("*"))


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def last_due(cron: Cron, now: datetime, window_minutes: int) -> datetime | None:
    """The latest matching minute in the last `window_minutes` minutes up to and including now's minute."""
    moment = _minute(now)
    for _ in range(max(1, window_minutes)):
        if cron.matches(moment):
            return moment
        moment -= timedelta(minutes=1)
    return None


def next_due(cron: Cron, after: datetime) -> datetime | None:
    """The first matching minute strictly after `after` (None when none falls within five years)."""
    start = _minute(after) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    hours, minutes = sorted(cron.hours), sorted(cron.minutes)
    for _ in range(SEARCH_DAYS):
        if cron.day_matches(day):
            for hour in hours:
                for minute in minutes:
                    moment = day.replace(hour=hour, minute=minute)
                    if moment >= start:
                        return moment
        day += timedelta(days=1)
    return None
