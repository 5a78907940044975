"""The five-field cron matcher behind calendar motivations (UTC)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.services import cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("expression, moment, expected", [
    ("* * * * *", "2026-03-04T05:06", True),
    ("0 9 * * 1-5", "2026-12-04T09:00", True),  # a Friday
    ("0 9 * * 1-5", "2026-12-05T09:00", False),  # a Saturday
    ("0 9 * * mon-fri", "2026-12-07T09:00", True),  # names, a Monday
    ("0 9 * * 0", "2026-12-06T09:00", True),  # Sunday is 0 ...
    ("0 9 * * 7", "2026-12-06T09:00", True),  # ... and 7
    ("*/15 * * * *", "2026-01-01T10:45", True),
    ("*/15 * * * *", "2026-01-01T10:46", False),
    ("5/20 * * * *", "2026-01-01T10:45", True),  # 5, 25, 45
    ("0 0-6/3 * * *", "2026-01-01T06:00", True),
    ("0 0-6/3 * * *", "2026-01-01T07:00", False),
    ("0 12 1,15 * *", "2026-01-15T12:00", True),
    ("0 12 * jan,jul *", "2026-07-02T12:00", True),
    ("0 12 * jan,jul *", "2026-08-02T12:00", False),
    # Both day fields restricted: either matching is enough (Vixie cron).
    ("0 0 13 * 5", "2026-02-13T00:00", True),  # the 13th (a Friday too)
    ("0 0 13 * 5", "2026-02-20T00:00", True),  # a Friday, not the 13th
    ("0 0 13 * 5", "2026-02-21T00:00", False),
    ("@daily", "2026-05-05T00:00", True),
    ("@hourly", "2026-05-05T07:01", False),
])
def test_matches(expression, moment, expected):
    assert cron.parse(expression).matches(at(moment)) is expected


@pytest.mark.parametrize("expression, field", [
    ("* * * *", "5 fields"),
    ("* * * * * *", "5 fields"),
    ("60 * * * *", "minute"),
    ("* 24 * * *", "hour"),
    ("* * 0 * *", "day of month"),
    ("* * * 13 *", "month"),
    ("* * * * 8", "day of week"),
    ("*/0 * * * *", "minute"),
    ("5-1 * * * *", "minute"),
    ("* * * foo *", "month"),
    ("1,,2 * * * *", "minute"),
    ("mon * * * *", "minute"),  # names only where they mean something
])
def test_bad_expressions_name_the_field(expression, field):
    with pytest.raises(cron.CronError) as caught:
        cron.parse(expression)
    assert field in str(caught.value)


def test_last_due_looks_back_within_the_window():
    spec = cron.parse("30 9 * * *")
    assert cron.last_due(spec, at("2026-06-01T09:30:59"), 10) == at("2026-06-01T09:30")
    assert cron.last_due(spec, at("2026-06-01T09:39:00"), 10) == at("2026-06-01T09:30")
    assert cron.last_due(spec, at("2026-06-01T09:40:00"), 10) is None  # too late: the window is 10 minutes
    assert cron.last_due(spec, at("2026-06-01T09:29:59"), 10) is None


def test_next_due():
    assert cron.next_due(cron.parse("0 9 * * 1-5"), at("2026-12-04T09:00")) == at("2026-12-07T09:00")
    assert cron.next_due(cron.parse("*/5 * * * *"), at("2026-01-01T23:58:10")) == at("2026-01-02T00:00")
    assert cron.next_due(cron.parse("0 0 29 2 *"), at("2026-03-01T00:00")) == at("2028-02-29T00:00")
    assert cron.next_due(cron.parse("0 0 30 2 *"), at("2026-03-01T00:00")) is None  # never happens
