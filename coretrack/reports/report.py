"""What every report is made of: its columns, its statement for some filters, and the conditions the
filters add to it.

Each report is one SQL statement for some filters (see filters.py); pages, the CSV export and the JSON
API all use it.  Counts come from the aggregates each recipient maintains atomically (``access_count``,
``first_access``, ``last_access``, ``click_count``, ``human_clicks``) through covering indexes; only the
Activity report reads ``access_events``, by time range on an index that holds (at, recipient_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, RowMapping, Select, and_, case, func, null, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from .. import localtime
from ..models import AnonymousTotal, Contact, Email, Lead, Recipient, User
from ..sending.merge_fields import readable
from .filters import Filters

if TYPE_CHECKING:
    # A statement of any columns (each report selects its own).
    AnySelect = Select[*tuple[Any, ...]]

# A report's row: its columns' keys to their values (numbers, text, times, None).
Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    key: str  # the row key, the sort key, the CSV column and the JSON field
    label: str
    kind: str = "text"  # text | number | percent | time | status | flag
    descending_first: bool = False  # the first click on its header sorts high to low
    base: str = ""  # a rate's: the key of the column holding its base (how many it is a share of)
    base_name: str = "measured recipients"  # a rate's: what its base is, in words ("x% of N <base_name>")

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "percent")


def number_column(key: str, label: str, kind: str = "number") -> Column:
    return Column(key, label, kind, descending_first=True)


def time_column(key: str, label: str) -> Column:
    return Column(key, label, "time", descending_first=True)


ACCESSES, LAST_ACCESS = number_column("accesses", "Accesses"), time_column("last_access", "Last access")
# Every count twice: all loads of the image (accesses, loaded) and the likely-human ones (human
# opens, opened: first_human_at, which a human click sets too).
HUMAN_OPENS = number_column("human_opens", "Likely-human opens")
# Clicks on the email's rewritten links (scanners' included: each click event keeps its verdict), and
# beside them the likely-human ones (the events whose verdict is human: recipients.human_clicks).
CLICKS = number_column("clicks", "Clicks")
HUMAN_CLICKS = number_column("human_clicks", "Likely-human clicks")
# Whose reading was measured (recipients.tracked, decided as each message went) and whose was not: a
# rate is a share of the measured recipients its email was delivered to, never of the others.  The
# unmeasured recipients' reading is only ever the email's anonymous totals (anonymous_totals), shown
# in columns of their own and never added to a measured count.
MEASURED = number_column("measured", "Measured recipients")
# Delivered: accepted by the mail server, and no bounce or drop reported since.  Every rate of
# reading is a share of the measured ones among them, on every page, report and API alike.
NOT_DELIVERED = ("bounced", "dropped")
IS_DELIVERED = and_(Recipient.status == "sent", Recipient.delivery_status.not_in(NOT_DELIVERED))
IS_MEASURED = and_(IS_DELIVERED, Recipient.tracked)
UNMEASURED = number_column("unmeasured", "Unmeasured recipients")
ANONYMOUS = (number_column("anonymous_loads", "Anonymous loads"),
             number_column("anonymous_human_loads", "Anonymous likely-human loads"),
             number_column("anonymous_clicks", "Anonymous clicks"))


def rate_column(key: str, label: str, base: str = "measured", base_name: str = "measured recipients") -> Column:
    return Column(key, label, "percent", descending_first=True, base=base, base_name=base_name)


def day_range_condition(column: InstrumentedAttribute[datetime | None], filters: Filters) -> list[ColumnElement[bool]]:
    """``from`` and ``to`` as a half-open range of the filters' days, so the whole last day is in it."""
    conditions = []
    if filters.date_from:
        conditions.append(column >= localtime.day_start(filters.date_from, filters.time_zone))
    if filters.date_to:
        conditions.append(column < localtime.day_start(filters.date_to + timedelta(days=1), filters.time_zone))
    return conditions


def email_conditions(filters: Filters, dated: bool = True) -> list[ColumnElement[bool]]:
    """Sent email, by sender and subject; ``dated``: sent in the date range (Activity dates accesses instead)."""
    conditions = [Email.sent_at.is_not(None), *day_range_condition(Email.sent_at, filters)] if dated else []
    if filters.sender:
        conditions.append(Email.sender_id == select(User.id).where(User.name == filters.sender).scalar_subquery())
    if filters.subject:
        conditions.append(Email.subject.icontains(filters.subject, autoescape=True))
    return conditions


RECORD_KEYS = {"contact": Recipient.contact_id, "account": Recipient.account_id, "lead": Recipient.lead_id}


def recipient_conditions(filters: Filters, by_record_type: bool = True) -> list[ColumnElement[bool]]:
    conditions = []
    if filters.status:
        conditions.append(Recipient.status == filters.status)
    if filters.record_type and by_record_type:
        conditions.append(RECORD_KEYS[filters.record_type].is_not(None))
    return conditions


def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def measured_sum(column: ColumnElement[int] | InstrumentedAttribute[int]) -> ColumnElement[int]:
    """The column summed over measured recipients only (the others' counts stay 0 anyway: nothing of
    their reading is recorded, so this only makes sure no count can ever mix them in)."""
    return func.coalesce(func.sum(case((Recipient.tracked, column), else_=0)), 0)


def anonymous_sums(email_id: ColumnElement[int] | InstrumentedAttribute[int],
                   filters: Filters) -> list[ColumnElement[Any]]:
    """The email's anonymous totals (loads, likely-human loads, clicks) as the ANONYMOUS columns.
    They belong to no recipient, so a filter on recipients (status, record type) cannot apply to
    them: they are then left empty rather than shown as if they matched it."""
    if recipient_conditions(filters):
        return [null().label(column.key) for column in ANONYMOUS]
    return [select(func.coalesce(func.sum(total), 0)).where(AnonymousTotal.email_id == email_id)
            .scalar_subquery().label(column.key)
            for total, column in zip((AnonymousTotal.loads, AnonymousTotal.human_loads, AnonymousTotal.clicks),
                                     ANONYMOUS, strict=True)]


def person_name(model: type[Contact] | type[Lead]) -> ColumnElement[str]:
    return func.trim(model.first_name + " " + model.last_name)


class Report:
    """A report: its columns (in order), its default sort, and its statement for some filters."""

    name: str
    title: str
    note = ""  # what its page says of whose reading its figures count, after the count of rows
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
        row = {key: value for key, value in mapping.items() if key != "total_rows"}
        if "subject" in row:  # as a reader would take it ("Hello ‹first name›"): pages, CSV and API alike
            row["subject"] = readable(row["subject"])
        return row
