"""The reports' statements: per email, per recipient, per record, and accesses over time.

Each report is one SQL statement for some filters (see filters.py); pages, the CSV export and the JSON
API all use it.  Counts come from the aggregates each recipient maintains atomically (``access_count``,
``first_access``, ``last_access``) through covering indexes; only the Activity report reads
``access_events``, by time range on an index that holds (at, recipient_id).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    Select,
    String,
    case,
    distinct,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.selectable import CTE, Subquery

from .. import localtime
from ..models import AccessEvent, Account, Contact, Email, Lead, Recipient, User
from ..paging import Page
from . import chart
from .filters import Filters

if TYPE_CHECKING:
    # A statement of any columns (each report selects its own).
    AnySelect = Select[*tuple[Any, ...]]

ACTIVITY_DAYS = 30  # the default range of the Activity report
# A per-day chart wider than this is unreadable; it also keeps the Activity query (one SELECT per
# bucket) under SQLite's limit of 500 SELECTs in one compound statement.
MAX_DAYS = 400
MAX_HOURS = 7 * 24
# A report's row: its columns' keys to their values (numbers, text, times, None).
Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    key: str  # the row key, the sort key, the CSV column and the JSON field
    label: str
    kind: str = "text"  # text | number | percent | time | status
    descending_first: bool = False  # the first click on its header sorts high to low

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "percent")


def _number(key: str, label: str, kind: str = "number") -> Column:
    return Column(key, label, kind, descending_first=True)


def _time(key: str, label: str) -> Column:
    return Column(key, label, "time", descending_first=True)


ACCESSES, LAST_ACCESS = _number("accesses", "Accesses"), _time("last_access", "Last access")
# Every count twice: all loads of the image (accesses, loaded) and the likely-human ones (human
# opens, opened: first_human_at, which a human click sets too).
HUMAN_OPENS = _number("human_opens", "Likely-human opens")
# Clicks on the email's rewritten links (scanners' included: each click event keeps its verdict).
CLICKS = _number("clicks", "Clicks")


def _day_range_condition(column: InstrumentedAttribute[datetime | None], filters: Filters) -> list[ColumnElement[bool]]:
    """``from`` and ``to`` as a half-open range of the filters' days, so the whole last day is in it."""
    conditions = []
    if filters.date_from:
        conditions.append(column >= localtime.day_start(filters.date_from, filters.time_zone))
    if filters.date_to:
        conditions.append(column < localtime.day_start(filters.date_to + timedelta(days=1), filters.time_zone))
    return conditions


def _email_conditions(filters: Filters, dated: bool = True) -> list[ColumnElement[bool]]:
    """Sent email, by sender and subject; ``dated``: sent in the date range (Activity dates accesses instead)."""
    conditions = [Email.sent_at.is_not(None), *_day_range_condition(Email.sent_at, filters)] if dated else []
    if filters.sender:
        conditions.append(Email.sender_id == select(User.id).where(User.name == filters.sender).scalar_subquery())
    if filters.subject:
        conditions.append(Email.subject.icontains(filters.subject, autoescape=True))
    return conditions


_RECORD_KEYS = {"contact": Recipient.contact_id, "account": Recipient.account_id, "lead": Recipient.lead_id}


def _recipient_conditions(filters: Filters, by_record_type: bool = True) -> list[ColumnElement[bool]]:
    conditions = []
    if filters.status:
        conditions.append(Recipient.status == filters.status)
    if filters.record_type and by_record_type:
        conditions.append(_RECORD_KEYS[filters.record_type].is_not(None))
    return conditions


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _person_name(model: type[Contact] | type[Lead]) -> ColumnElement[str]:
    return func.trim(model.first_name + " " + model.last_name)


class Report:
    """A report: its columns (in order), its default sort, and its statement for some filters."""

    name: str
    title: str
    columns: tuple[Column, ...]
    default_sort: str
    # After the chosen column: ending with a unique column, so pages never overlap.
    tie_breakers: tuple[tuple[str, bool], ...]  # (key, descending)
    # Aggregated reports count their rows in the same query (a window over the groups) instead of
    # aggregating twice; a plain list counts faster on its own than by materialising every row.
    total_in_window = False
    # Columns sorted by another selected column than the one shown (e.g. a cheaper equivalent).
    sort_keys: dict[str, str] = {}

    def column(self, key: str) -> Column:
        return next(column for column in self.columns if column.key == key)

    def check(self, filters: Filters) -> None:
        """Adds to ``filters.errors`` what only this report refuses."""

    def statement(self, filters: Filters) -> AnySelect:
        raise NotImplementedError

    def ordered(self, filters: Filters) -> AnySelect:
        """The statement sorted by a whitelisted column: its label is a name we wrote, never user text."""
        statement = self.statement(filters)
        labels = {label.key: label for label in statement.selected_columns}
        sort = labels[self.sort_keys.get(filters.sort, filters.sort or self.default_sort)]
        direction = sort.desc() if filters.descending else sort.asc()
        # Empty cells last either way, on SQLite and PostgreSQL alike.
        ties = [labels[key].desc() if descending else labels[key].asc() for key, descending in self.tie_breakers]
        return statement.order_by(sort.is_(None), direction, *ties)

    def count(self, session: Session, filters: Filters) -> int:
        return session.scalar(select(func.count()).select_from(self.statement(filters).subquery())) or 0

    def page_statement(self, filters: Filters, limit: int, offset: int) -> AnySelect:
        statement = self.ordered(filters)
        if self.total_in_window:
            statement = statement.add_columns(func.count().over().label("total_rows"))
        return statement.limit(limit).offset(offset)

    def row(self, mapping: RowMapping) -> Row:
        return {key: value for key, value in mapping.items() if key != "total_rows"}


class EmailsReport(Report):
    name, title = "emails", "Emails"
    columns = (
        Column("subject", "Subject"),
        Column("sender", "Sender"),
        _time("sent_at", "Sent at"),
        _number("recipients", "Recipients"),
        _number("delivered", "Delivered"),
        _number("opened", "Opened"),
        _number("open_rate", "Open rate (%)", "percent"),
        _number("loaded", "Loaded the image"),
        _number("load_rate", "Load rate (%)", "percent"),
        ACCESSES,
        HUMAN_OPENS,
        CLICKS,
        LAST_ACCESS,
    )
    default_sort, tie_breakers = "sent_at", (("email_id", True),)
    total_in_window = True

    def statement(self, filters: Filters) -> AnySelect:
        delivered = _count_if(Recipient.status == "sent")
        opened = _count_if(Recipient.first_human_at.is_not(None))
        loaded = _count_if(Recipient.access_count > 0)
        return (
            select(
                Email.id.label("email_id"), Email.subject.label("subject"), User.name.label("sender"),
                Email.sent_at.label("sent_at"), func.count(Recipient.id).label("recipients"),
                delivered.label("delivered"), opened.label("opened"),
                (opened * 100.0 / func.nullif(delivered, 0)).label("open_rate"),
                loaded.label("loaded"), (loaded * 100.0 / func.nullif(delivered, 0)).label("load_rate"),
                func.coalesce(func.sum(Recipient.access_count), 0).label("accesses"),
                func.coalesce(func.sum(Recipient.human_opens), 0).label("human_opens"),
                func.coalesce(func.sum(Recipient.click_count), 0).label("clicks"),
                func.max(Recipient.last_access).label("last_access"),
            )
            .join(Recipient, Recipient.email_id == Email.id)
            .join(User, User.id == Email.sender_id)
            .where(*_email_conditions(filters), *_recipient_conditions(filters))
            .group_by(Email.id, Email.subject, User.name, Email.sent_at)
        )

    def row(self, mapping: RowMapping) -> Row:
        row = super().row(mapping)
        for rate in ("open_rate", "load_rate"):
            if row[rate] is not None:
                row[rate] = round(float(row[rate]), 1)
        return row


class RecipientsReport(Report):
    name, title = "recipients", "Recipients"
    columns = (
        Column("subject", "Email"),
        Column("address", "Address"),
        Column("record_type", "Record type"),
        Column("record", "Related record"),
        Column("status", "Status", "status"),
        ACCESSES,
        HUMAN_OPENS,
        CLICKS,
        _time("first_access", "First access"),
        LAST_ACCESS,
    )
    default_sort, tie_breakers = "last_access", (("recipient_id", True),)
    # The record's name as the recipient row kept it when the email was composed: sorting by it
    # needs no join to the three record tables for every recipient (the page shows the current name).
    sort_keys = {"record": "record_sort_name"}

    def page_statement(self, filters: Filters, limit: int, offset: int) -> AnySelect:
        """Sorts narrow rows (SQLite leaves out the joins for names the sort does not use), then reads the page."""
        ordered = self.ordered(filters)
        keys = ordered.with_only_columns(Recipient.id).limit(limit).offset(offset).subquery()
        return ordered.join(keys, keys.c.id == Recipient.id)

    @staticmethod
    def _conditions(filters: Filters) -> list[ColumnElement[bool]]:
        return [*_email_conditions(filters), *_recipient_conditions(filters)]

    def count(self, session: Session, filters: Filters) -> int:
        """Without the joins for names: counting them would read every record of every recipient."""
        return session.scalar(select(func.count()).select_from(Recipient).join(Email, Email.id == Recipient.email_id)
                              .where(*self._conditions(filters))) or 0

    def statement(self, filters: Filters) -> AnySelect:
        record_type = case(
            (Recipient.contact_id.is_not(None), "contact"), (Recipient.account_id.is_not(None), "account"),
            (Recipient.lead_id.is_not(None), "lead"), else_=null(),
        )
        return (
            select(
                Recipient.id.label("recipient_id"), Email.id.label("email_id"), Email.subject.label("subject"),
                Recipient.address.label("address"), record_type.label("record_type"),
                func.coalesce(Recipient.contact_id, Recipient.account_id, Recipient.lead_id).label("record_id"),
                func.coalesce(_person_name(Contact), Account.name, _person_name(Lead)).label("record"),
                case((record_type.is_(None), null()), else_=Recipient.name).label("record_sort_name"),
                Recipient.status.label("status"), Recipient.access_count.label("accesses"),
                Recipient.human_opens.label("human_opens"),
                Recipient.click_count.label("clicks"),
                Recipient.first_access.label("first_access"), Recipient.last_access.label("last_access"),
            )
            .join(Email, Email.id == Recipient.email_id)
            .outerjoin(Contact, Contact.id == Recipient.contact_id)
            .outerjoin(Account, Account.id == Recipient.account_id)
            .outerjoin(Lead, Lead.id == Recipient.lead_id)
            .where(*self._conditions(filters))
        )


class RecordsReport(Report):
    """One kind of record at a time (contacts unless ``record_type`` says otherwise)."""

    name, title = "records", "Records"
    columns = (
        Column("record", "Record"),
        _number("emails", "Emails sent"),
        _number("opened", "Opened"),
        _number("loaded", "Loaded the image"),
        ACCESSES,
        HUMAN_OPENS,
        LAST_ACCESS,
    )
    default_sort, tie_breakers = "accesses", (("record", False), ("record_id", False))
    total_in_window = True
    NAMES: dict[str, tuple[type[Contact] | type[Account] | type[Lead], ColumnElement[str]]] = {
        "contact": (Contact, _person_name(Contact)), "account": (Account, Account.name.expression),
        "lead": (Lead, _person_name(Lead)),
    }

    def check(self, filters: Filters) -> None:
        filters.record_type = filters.record_type or "contact"

    @staticmethod
    def _sent_to(record_type: str) -> Subquery:
        """(record_id, email_id, status, access_count, last_access, human_opens, first_human_at) of each
        recipient that is the record."""
        columns = (Recipient.email_id, Recipient.status, Recipient.access_count, Recipient.last_access,
                   Recipient.human_opens, Recipient.first_human_at)
        if record_type != "account":
            key = _RECORD_KEYS[record_type]
            return select(key.label("record_id"), *columns).where(key.is_not(None)).subquery()
        # An account's row rolls up email sent to it and to its contacts.
        return union_all(
            select(Recipient.account_id.label("record_id"), *columns).where(Recipient.account_id.is_not(None)),
            select(Contact.account_id, *columns).join(Contact, Contact.id == Recipient.contact_id)
            .where(Contact.account_id.is_not(None)),
        ).subquery()

    def statement(self, filters: Filters) -> AnySelect:
        sent = self._sent_to(filters.record_type)
        emails: ColumnElement[int]
        opened: ColumnElement[int]
        loaded: ColumnElement[int]
        if filters.record_type == "account":
            # Several contacts of one account may get the same email: it counts once.
            emails = func.count(distinct(sent.c.email_id))
            opened = func.count(distinct(case((sent.c.first_human_at.is_not(None), sent.c.email_id))))
            loaded = func.count(distinct(case((sent.c.access_count > 0, sent.c.email_id))))
        else:
            # An email has one recipient per address, so a contact or lead is in it once: no DISTINCT to pay for.
            emails, opened = func.count(), _count_if(sent.c.first_human_at.is_not(None))
            loaded = _count_if(sent.c.access_count > 0)
        totals = (
            select(sent.c.record_id, emails.label("emails"), opened.label("opened"), loaded.label("loaded"),
                   func.coalesce(func.sum(sent.c.access_count), 0).label("accesses"),
                   func.coalesce(func.sum(sent.c.human_opens), 0).label("human_opens"),
                   func.max(sent.c.last_access).label("last_access"))
            .join(Email, Email.id == sent.c.email_id)
            .where(*_email_conditions(filters), *([sent.c.status == filters.status] if filters.status else []))
            .group_by(sent.c.record_id)
        ).subquery()
        model, name = self.NAMES[filters.record_type]
        return select(
            literal(filters.record_type, String).label("record_type"), totals.c.record_id, name.label("record"),
            totals.c.emails, totals.c.opened, totals.c.loaded, totals.c.accesses, totals.c.human_opens,
            totals.c.last_access,
        ).join(model, model.id == totals.c.record_id)


@dataclass
class Activity:
    """Accesses and unique opens (distinct recipients) per day or hour, every bucket of the range."""

    start: date
    end: date
    by: str
    rows: list[Row]  # {"bucket": "2026-03-01" | "2026-03-01 13:00", "accesses", "unique_opens"}
    total_accesses: int
    unique_recipients: int  # over the whole range: not the sum of the buckets

    @property
    def peak(self) -> int:
        return chart.peak(self.rows)


class ActivityReport(Report):
    name, title = "activity", "Activity"
    columns = (Column("bucket", "Time", "time_label"), _number("accesses", "Accesses"),
               _number("unique_opens", "Unique opens"), HUMAN_OPENS)
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
    def _bucket(recipients: CTE | None, label: str, start: datetime, stop: datetime) -> AnySelect:
        # An event may stand for several loads of one minute (the per-recipient bound): sum them.
        statement = select(literal(label, String).label("bucket"),
                           func.coalesce(func.sum(AccessEvent.hits), 0).label("accesses"),
                           func.count(distinct(AccessEvent.recipient_id)).label("unique_opens"),
                           func.coalesce(func.sum(case((AccessEvent.verdict == "human", AccessEvent.hits), else_=0)),
                                         0).label("human_opens"))
        statement = statement.where(AccessEvent.at >= start, AccessEvent.at < stop)
        if recipients is not None:
            # "+ 0": read the bucket's time range and look each access up in the kept set; seeking every
            # kept recipient's accesses bucket by bucket is far slower once the set is large.
            statement = statement.where((AccessEvent.recipient_id + 0).in_(select(recipients.c.id)))
        return statement

    @staticmethod
    def recipients(filters: Filters) -> CTE | None:
        """The recipients the filters keep, found once for every bucket (None: all of them)."""
        email_conditions = _email_conditions(filters, dated=False)
        recipient_conditions = _recipient_conditions(filters)
        if not (email_conditions or recipient_conditions):
            return None
        statement = select(Recipient.id).where(*recipient_conditions)
        if email_conditions:
            statement = statement.join(Email, Email.id == Recipient.email_id).where(*email_conditions)
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
        parts = [self._bucket(kept, start.isoformat(), start, stop) for _, start, stop in buckets]
        whole_range = self._bucket(kept, "total", starts[0], starts[-1])
        found = {row.bucket: row for row in session.execute(union_all(*parts, whole_range))}
        rows = [{"bucket": name, "accesses": found[start.isoformat()].accesses,
                 "unique_opens": found[start.isoformat()].unique_opens,
                 "human_opens": found[start.isoformat()].human_opens} for name, start, _ in buckets]
        total = found["total"]
        return Activity(first, last, filters.by, rows, total.accesses, total.unique_opens)

    @staticmethod
    def sorted_rows(activity: Activity, filters: Filters) -> list[Row]:
        key = filters.sort or "bucket"
        return sorted(activity.rows, key=lambda row: (row[key], row["bucket"]), reverse=filters.descending)


REPORTS: dict[str, Report] = {report.name: report for report in
                              (EmailsReport(), RecipientsReport(), RecordsReport(), ActivityReport())}


def table_page(session: Session, report: Report, filters: Filters, number: int, per_page: int) -> Page[Row]:
    """One page of a table report, rows as dicts; past the last page, the last page."""
    total = None if report.total_in_window else report.count(session, filters)
    page: Page[Row] = Page(items=[], number=max(1, number), per_page=per_page, total=total or 0)

    def fetch() -> list[RowMapping]:
        statement = report.page_statement(filters, per_page, (page.number - 1) * per_page)
        return list(session.execute(statement).mappings())

    if total is not None:
        page.number = min(page.number, page.pages)
    rows = fetch()
    if total is None:
        if not rows and page.number > 1:
            page.total = report.count(session, filters)
            page.number = page.pages
            rows = fetch()
        page.total = rows[0]["total_rows"] if rows else 0
    page.items = [report.row(row) for row in rows]
    return page


def activity_page(activity: Activity, filters: Filters, number: int, per_page: int) -> Page[Row]:
    rows = ActivityReport.sorted_rows(activity, filters)
    page: Page[Row] = Page(items=[], number=1, per_page=per_page, total=len(rows))
    page.number = min(max(1, number), page.pages)
    page.items = rows[(page.number - 1) * per_page: page.number * per_page]
    return page


def senders(session: Session) -> list[str]:
    """Users who sent email, for the sender filter."""
    return list(session.scalars(
        select(User.name).where(User.id.in_(select(Email.sender_id).where(Email.sent_at.is_not(None))))
        .order_by(User.name)
    ))
