"""The Activity report: accesses, unique opens and clicks per day or hour over a range, one statement per
bucket; beside them, apart, the anonymous loads of the unmeasured recipients' shared images per day."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, case, distinct, func, literal, select, union_all
from sqlalchemy.engine import Row as ResultRow
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE

from .. import localtime
from ..models import AccessEvent, AnonymousTotal, ClickEvent, Email, Recipient
from ..paging import Page
from . import chart
from .filters import Filters
from .report import (
    ANONYMOUS,
    CLICKS,
    HUMAN_CLICKS,
    HUMAN_OPENS,
    Column,
    Report,
    Row,
    email_conditions,
    number_column,
    recipient_conditions,
)

if TYPE_CHECKING:
    from .report import AnySelect

ACTIVITY_DAYS = 30  # the default range of the Activity report
# A per-day chart wider than this is unreadable; it also keeps the Activity query (one SELECT per
# bucket) under SQLite's limit of 500 SELECTs in one compound statement.
MAX_DAYS = 400
MAX_HOURS = 7 * 24


@dataclass
class Activity:
    """Accesses, unique opens (distinct recipients) and clicks per day or hour, every bucket of the range."""

    start: date
    end: date
    by: str
    # {"bucket": "2026-03-01" | "2026-03-01 13:00", "accesses", "unique_opens", "human_opens", "clicks",
    #  "human_clicks", "anonymous_loads"}
    rows: list[Row]
    total_accesses: int
    unique_recipients: int  # over the whole range: not the sum of the buckets
    total_clicks: int
    total_human_clicks: int
    # Loads of the unmeasured recipients' anonymous images over the range's days (kept per UTC day, so
    # none per hour); None under a filter on recipients, which they belong to none of.
    anonymous_loads: int | None = None

    @property
    def peak(self) -> int:
        return chart.peak(self.rows)


class ActivityReport(Report):
    name, title = "activity", "Activity"
    columns = (Column("bucket", "Time", "time_label"), number_column("accesses", "Accesses"),
               number_column("unique_opens", "Unique opens"), HUMAN_OPENS, CLICKS, HUMAN_CLICKS, ANONYMOUS[0])
    note = ("Accesses and opens are the measured recipients' only; anonymous loads (of unmeasured "
            "recipients' shared image, counted per day in UTC) are apart and never in them.")
    default_sort, tie_breakers = "bucket", ()

    @staticmethod
    def range(filters: Filters) -> tuple[date, date]:
        end = filters.date_to or localtime.today(filters.time_zone)
        start = filters.date_from or end - timedelta(days=ACTIVITY_DAYS - 1)
        return start, end

    def check(self, filters: Filters) -> None:
        """A range too long to draw (or one that ends before it starts) is refused; the page shows
        the default range per day instead, which is always within the caps."""
        start, end = self.range(filters)
        days = (end - start).days + 1
        refused = {}
        if filters.by == "hour" and days * 24 > MAX_HOURS:
            refused["by"] = f"per hour covers at most {MAX_HOURS // 24} days: shorten the range"
        if days > MAX_DAYS:
            refused["to"] = f"the range covers at most {MAX_DAYS} days"
        elif days < 1:
            refused["to"] = "the end of the range (today, when none is given) is before its start"
        if refused:
            filters.errors.update({key: message for key, message in refused.items() if key not in filters.errors})
            filters.by, filters.date_from, filters.date_to = "day", None, None

    def statement(self, filters: Filters) -> AnySelect:
        raise NotImplementedError("the Activity report is one statement per bucket: see activity()")

    @staticmethod
    def _bucket(recipients: CTE | None, label: str, start: datetime, stop: datetime, hourly: bool = False) -> AnySelect:
        # An event may stand for several loads of one minute (the per-recipient bound): sum them.
        statement = select(literal(label, String).label("bucket"),
                           func.coalesce(func.sum(AccessEvent.hits), 0).label("accesses"),
                           func.count(distinct(AccessEvent.recipient_id)).label("unique_opens"),
                           func.coalesce(func.sum(case((AccessEvent.verdict == "human", AccessEvent.hits), else_=0)),
                                         0).label("human_opens")).where(AccessEvent.at >= start, AccessEvent.at < stop)
        if hourly:
            # An open imported from an old coreBOS that lost its time of day has a day and no hour.
            statement = statement.where(AccessEvent.time_known)
        return ActivityReport._kept(recipients, AccessEvent, statement)

    @staticmethod
    def _click_bucket(recipients: CTE | None, label: str, start: datetime, stop: datetime,
                      hourly: bool = False) -> AnySelect:
        # Clicks fold per minute as loads do (ClickEvent.hits); a later click may revise a verdict.
        # Every click knows its time of day: ``hourly`` changes nothing.
        return ActivityReport._kept(recipients, ClickEvent, select(
            literal(label, String).label("bucket"),
            func.coalesce(func.sum(ClickEvent.hits), 0).label("clicks"),
            func.coalesce(func.sum(case((ClickEvent.verdict == "human", ClickEvent.hits), else_=0)),
                          0).label("human_clicks")).where(ClickEvent.at >= start, ClickEvent.at < stop))

    @staticmethod
    def _kept(recipients: CTE | None, events: type[AccessEvent] | type[ClickEvent], statement: AnySelect) -> AnySelect:
        if recipients is None:
            return statement
        # "+ 0": read the bucket's time range and look each event up in the kept set; seeking every
        # kept recipient's events bucket by bucket is far slower once the set is large.
        return statement.where((events.recipient_id + 0).in_(select(recipients.c.id)))

    @staticmethod
    def recipients(filters: Filters) -> CTE | None:
        """The recipients the filters keep, found once for every bucket (None: all of them)."""
        kept_emails = email_conditions(filters, dated=False)
        kept_recipients = recipient_conditions(filters)
        if not (kept_emails or kept_recipients):
            return None
        statement = select(Recipient.id).where(*kept_recipients)
        if kept_emails:
            statement = statement.join(Email, Email.id == Recipient.email_id).where(*kept_emails)
        return statement.cte("kept")

    def activity(self, session: Session, filters: Filters) -> Activity:
        first, last = self.range(filters)
        zone = filters.time_zone
        # The buckets' bounds as the database keeps times: the filters' days (23 to 25 hours long
        # where clocks change), or the hours in them.
        starts = [localtime.day_start(day, zone) for day in localtime.days(first, last + timedelta(days=1))]
        if filters.by == "hour":
            hours = [timedelta(hours=number) for number in range(25)]
            starts = [start + hour for start, stop in itertools.pairwise(starts) for hour in hours
                      if start + hour < stop] + starts[-1:]
        # (Outside UTC, the zone's abbreviation tells apart the hour that comes twice a year.)
        label = "%Y-%m-%d" if filters.by == "day" else "%Y-%m-%d %H:00" if zone.key == "UTC" else "%Y-%m-%d %H:00 %Z"
        buckets = [(localtime.local(start, zone).strftime(label), start, stop)
                   for start, stop in itertools.pairwise(starts)]
        # One range scan of the (at, recipient_id) index per bucket, and one for the whole range: grouping
        # by an expression of the time would make SQLite sort every access of the range instead.  Each
        # bucket is named by its start in UTC (a local hour can come twice when clocks go back).
        kept = self.recipients(filters)

        def by_bucket(bucket: Callable[..., AnySelect]) -> dict[str, ResultRow[Any]]:
            parts = [bucket(kept, start.isoformat(), start, stop, filters.by == "hour") for _, start, stop in buckets]
            whole_range = bucket(kept, "total", starts[0], starts[-1])
            return {row.bucket: row for row in session.execute(union_all(*parts, whole_range))}

        found, clicked = by_bucket(self._bucket), by_bucket(self._click_bucket)
        anonymous = self.anonymous_loads(session, filters, first, last)
        rows = [{"bucket": name, "accesses": found[start.isoformat()].accesses,
                 "unique_opens": found[start.isoformat()].unique_opens,
                 "human_opens": found[start.isoformat()].human_opens,
                 "clicks": clicked[start.isoformat()].clicks, "human_clicks": clicked[start.isoformat()].human_clicks,
                 "anonymous_loads": anonymous.get(name, 0) if anonymous is not None and filters.by == "day" else None}
                for name, start, _ in buckets]
        total, clicks = found["total"], clicked["total"]
        return Activity(first, last, filters.by, rows, total.accesses, total.unique_opens, clicks.clicks,
                        clicks.human_clicks, None if anonymous is None else sum(anonymous.values()))

    @staticmethod
    def anonymous_loads(session: Session, filters: Filters, first: date, last: date) -> dict[str, int] | None:
        """Anonymous loads per day ("2026-03-01") of the emails the filters keep, over [first, last];
        None when the filters choose recipients (the anonymous totals belong to none)."""
        if recipient_conditions(filters):
            return None
        statement = (select(AnonymousTotal.day, func.sum(AnonymousTotal.loads))
                     .where(AnonymousTotal.day >= first, AnonymousTotal.day <= last).group_by(AnonymousTotal.day))
        kept_emails = email_conditions(filters, dated=False)
        if kept_emails:
            statement = statement.join(Email, Email.id == AnonymousTotal.email_id).where(*kept_emails)
        return {day.isoformat(): int(loads) for day, loads in session.execute(statement)}

    @staticmethod
    def sorted_rows(activity: Activity, filters: Filters) -> list[Row]:
        key = filters.sort or "bucket"
        return sorted(activity.rows, key=lambda row: (row[key], row["bucket"]), reverse=filters.descending)


def activity_page(activity: Activity, filters: Filters, number: int, per_page: int) -> Page[Row]:
    rows = ActivityReport.sorted_rows(activity, filters)
    page: Page[Row] = Page(items=[], number=1, per_page=per_page, total=len(rows))
    page.number = min(max(1, number), page.pages)
    page.items = rows[(page.number - 1) * per_page: page.number * per_page]
    return page
