"""Business hours: is a person on duty now, and if not, when is the next opening?"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from autoreply.errors import ConfigError
from autoreply.settings import HoursConfig

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_span(day: str, span: str) -> tuple[time, time]:
    try:
        start_text, end_text = span.split("-")
        start = time.fromisoformat(start_text.strip())
        end = time.fromisoformat(end_text.strip())
    except ValueError:
        raise ConfigError(
            f"hours.weekly.{day}: '{span}' is not a time span; write it as 09:00-18:00"
        ) from None
    if end <= start:
        raise ConfigError(f"hours.weekly.{day}: '{span}' ends before it starts")
    return start, end


class BusinessHours:
    """Weekly opening hours in one time zone, with holidays closed all day."""

    def __init__(self, config: HoursConfig) -> None:
        try:
            self.tz = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"hours.timezone: unknown time zone '{config.timezone}'; "
                "use an IANA name such as Asia/Shanghai or Europe/Berlin"
            ) from None
        unknown = sorted(set(config.weekly) - set(DAYS))
        if unknown:
            raise ConfigError(
                f"hours.weekly: unknown day(s) {', '.join(unknown)}; known: {', '.join(DAYS)}"
            )
        self.always_open = not config.weekly
        self.spans = {day: _parse_span(day, span) for day, span in config.weekly.items()}
        self.holidays: set[date] = set(config.holidays)

    def _span(self, day: date) -> tuple[time, time] | None:
        if day in self.holidays:
            return None
        return self.spans.get(DAYS[day.weekday()])

    def is_open(self, when: datetime) -> bool:
        if self.always_open:
            return True
        local = when.astimezone(self.tz)
        span = self._span(local.date())
        return span is not None and span[0] <= local.time() < span[1]

    def next_open(self, when: datetime) -> datetime | None:
        """The next moment a person is on duty (``when`` itself if open now), in UTC;
        None if no opening within 60 days."""
        if self.is_open(when):
            return when.astimezone(UTC)
        local = when.astimezone(self.tz)
        for offset in range(61):
            day = local.date() + timedelta(days=offset)
            span = self._span(day)
            if span is None:
                continue
            start = datetime.combine(day, span[0], tzinfo=self.tz)
            if start > local:
                return start.astimezone(UTC)
        return None
