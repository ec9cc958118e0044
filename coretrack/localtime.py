"""Times as each user reads them.

The database keeps naive UTC (models.utcnow) and the JSON API speaks UTC; pages, CSV files and
charts show times in the user's time zone (their own choice, else the install's default from the
configuration editor) and say which.  A page's zone is set once per request (``use``) and read
where times are formatted (``local``), so templates and their macros need not pass it around.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

DEFAULT_ZONE = "UTC"
_current: ContextVar[ZoneInfo | None] = ContextVar("coretrack_time_zone", default=None)


@functools.cache
def zone_names() -> tuple[str, ...]:
    """The IANA zones a user may choose, sorted (the system's tz database, or the tzdata package)."""
    # "localtime" and "Factory" name no place; "posixrules" is a link kept for old software.
    return tuple(sorted(available_timezones() - {"localtime", "Factory", "posixrules"} | {DEFAULT_ZONE}))


def zone(name: str) -> ZoneInfo:
    """The zone of that name; ValueError with a message for a form if there is none."""
    if name not in zone_names():
        raise ValueError("choose a time zone from the list, such as Europe/Paris or America/New_York")
    return ZoneInfo(name)


def use(time_zone: ZoneInfo) -> None:
    """This request's zone, for every time formatted while it is handled."""
    _current.set(time_zone)


def current() -> ZoneInfo:
    return _current.get() or ZoneInfo(DEFAULT_ZONE)


def local(value: datetime, time_zone: ZoneInfo | None = None) -> datetime:
    """A stored (naive UTC) time in the zone, aware: its offset says which."""
    return value.replace(tzinfo=UTC).astimezone(time_zone or current())


def parse_local(value: str, time_zone: ZoneInfo | None = None) -> datetime:
    """A time typed in a form (``YYYY-MM-DDTHH:MM``, as a datetime-local field sends it) in the
    zone, as the database keeps times; ValueError with a message for the form."""
    try:
        typed = datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ValueError("enter a date and time such as 2026-12-24T09:30") from None
    return to_utc(typed.replace(tzinfo=time_zone or current()))


def parse_iso(value: str) -> datetime:
    """An ISO 8601 time with its offset or a Z (the API's), as the database keeps times;
    ValueError with a message for the caller."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("an ISO 8601 time such as 2026-12-24T09:30:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("give the time's offset or Z (UTC), such as 2026-12-24T09:30:00Z")
    return to_utc(moment)


def to_utc(value: datetime) -> datetime:
    """An aware time as the database keeps it (naive UTC)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def day_start(day: date, time_zone: ZoneInfo | None = None) -> datetime:
    """When ``day`` begins in the zone, as the database keeps times (a day is 23 to 25 hours long
    where clocks change)."""
    return to_utc(datetime.combine(day, time.min, tzinfo=time_zone or current()))


def today(time_zone: ZoneInfo | None = None) -> date:
    return datetime.now(time_zone or current()).date()


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=number) for number in range((last - first).days + 1)]
