"""Business hours decide what the customer is told when a ticket opens out of hours."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from autoreply.errors import ConfigError
from autoreply.hours import BusinessHours
from autoreply.settings import HoursConfig

SHANGHAI = HoursConfig(
    timezone="Asia/Shanghai",
    weekly={d: "09:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=[date(2026, 10, 1)],
)


def test_open_in_local_hours() -> None:
    hours = BusinessHours(SHANGHAI)
    # Monday 2026-11-23 10:00 in Shanghai is 02:00 UTC
    assert hours.is_open(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 11, 23, 11, 0, tzinfo=UTC))  # 19:00 local


def test_next_open_skips_weekend_and_holidays() -> None:
    hours = BusinessHours(SHANGHAI)
    friday_night = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # Fri 20:00 local
    assert hours.next_open(friday_night) == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    before_holiday = datetime(2026, 9, 30, 12, 0, tzinfo=UTC)  # Wed 20:00, Thu is a holiday
    assert hours.next_open(before_holiday) == datetime(2026, 10, 2, 1, 0, tzinfo=UTC)


def test_empty_week_is_always_open() -> None:
    assert BusinessHours(HoursConfig(weekly={})).is_open(datetime(2026, 1, 4, 3, tzinfo=UTC))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (HoursConfig(timezone="Mars/Olympus"), "unknown time zone"),
        (HoursConfig(weekly={"mon": "9 to 5"}), "hours.weekly.mon"),
        (HoursConfig(weekly={"mon": "18:00-09:00"}), "ends before it starts"),
        (HoursConfig(weekly={"monday": "09:00-18:00"}), "known: mon"),
    ],
)
def test_bad_hours_say_what_is_wrong(config: HoursConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BusinessHours(config)
