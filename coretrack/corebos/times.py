"""coreBOS's times, made coretrack's: read in the zone coreBOS ran in, kept as UTC.

coreBOS writes its times in its server's zone (``$default_timezone`` in its config.inc.php, which the
database never holds): ``createdtime``, an email's ``date_start``/``time_start`` and an open's
``accessdate``/``accesstime``.  Since coreBOS's mysqlstrictNO_ZERO_IN_DATE update, ``accesstime`` is a
TIME column (TrackAccess.php writes ``date('H:i:s')``), which the driver returns as a timedelta.  Older
installs still have the schema's original DATETIME there: MySQL without strict mode stored such a time
as a zero date ('23:30:00') or read it as a date ('10:11:12' became 2010-11-12), so a DATETIME that is
not on the access's own day is "time unknown" — the day is kept, never an invented time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .. import localtime

HOW_TO_FIND = ("the zone coreBOS ran in is $default_timezone in its config.inc.php "
               "(grep default_timezone config.inc.php); give it as --time-zone, e.g. --time-zone Europe/Madrid")


@dataclass(frozen=True)
class Moment:
    """A time as coretrack keeps it (naive UTC); ``known`` False when only its day is known (``at``
    is then the start of that day in coreBOS's zone)."""

    at: datetime
    known: bool = True


class Clock:
    """coreBOS's zone, converting its naive times."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone

    def utc(self, value: datetime) -> datetime:
        """A naive time of coreBOS's as UTC.  A time that came twice (clocks going back) is taken as
        the first; one that never was (clocks going forward) as the same wall time before the change."""
        return localtime.to_utc(value.replace(tzinfo=self.zone, fold=0))

    def day(self, day: date) -> Moment:
        return Moment(localtime.day_start(day, self.zone), known=False)

    def created(self, value: datetime | None) -> datetime | None:
        return self.utc(value) if isinstance(value, datetime) else None

    def sent(self, day: date | None, at: object) -> Moment | None:
        """An email's date_start and time_start ("HH:MM", as coreBOS's form saves it, or "HH:MM:SS")."""
        if not isinstance(day, date):
            return None
        clock = parse_clock(at)
        return self.day(day) if clock is None else Moment(self.utc(datetime.combine(day, clock)))

    def access(self, day: date | None, at: object) -> Moment | None:
        """An access row's accessdate and accesstime (TIME: a timedelta; the old DATETIME; text)."""
        if isinstance(at, datetime):
            if day is None:
                day = at.date()
            # Only a DATETIME on the access's own day is a real time (see the module's docstring).
            return Moment(self.utc(at)) if at.date() == day else self.day(day)
        if not isinstance(day, date):
            return None
        if isinstance(at, timedelta):
            if timedelta(0) <= at < timedelta(days=1):
                return Moment(self.utc(datetime.combine(day, time()) + at))
            return self.day(day)
        clock = parse_clock(at)
        return self.day(day) if clock is None else Moment(self.utc(datetime.combine(day, clock)))


def parse_clock(value: object) -> time | None:
    """A time of day from text ("10:15", "10:15:30"); None for anything else (empty, a zero date...)."""
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return time.fromisoformat(value.strip())
    except ValueError:
        return None


def clock_for(name: str | None) -> Clock:
    """The Clock of ``--time-zone``; ValueError saying how to find it when it is missing or unknown."""
    if not name:
        raise ValueError(f"--time-zone is required: {HOW_TO_FIND}")
    try:
        return Clock(localtime.zone(name))
    except ValueError:
        raise ValueError(f"--time-zone {name}: not a time zone name; {HOW_TO_FIND}") from None
