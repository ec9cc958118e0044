"""The table reports: per email, per recipient and per record, and a page of one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    String,
    and_,
    case,
    distinct,
    func,
    literal,
    not_,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery

from ..models import Account, Contact, Email, Lead, Recipient, User
from ..paging import Page
from .filters import Filters
from .report import (
    ACCESSES,
    ANONYMOUS,
    CLICKS,
    HUMAN_CLICKS,
    HUMAN_OPENS,
    IS_DELIVERED,
    IS_MEASURED,
    LAST_ACCESS,
    MEASURED,
    RECORD_KEYS,
    UNMEASURED,
    Column,
    Report,
    Row,
    anonymous_sums,
    count_if,
    email_conditions,
    measured_sum,
    number_column,
    person_name,
    rate_column,
    recipient_conditions,
    time_column,
)

if TYPE_CHECKING:
    from .report import AnySelect


class EmailsReport(Report):
    name, title = "emails", "Emails"
    note = ("Rates are shares of the measured recipients each email was delivered to (those whose reading "
            "was measured); the unmeasured recipients' reading is only the email's anonymous totals, in "
            "columns of their own and never in a rate.")
    columns = (
        Column("subject", "Subject"),
        Column("sender", "Sender"),
        time_column("sent_at", "Sent at"),
        number_column("recipients", "Recipients"),
        number_column("delivered", "Delivered"),
        MEASURED,
        number_column("opened", "Opened"),
        rate_column("open_rate", "Open rate (% of measured)"),
        number_column("loaded", "Loaded the image"),
        rate_column("load_rate", "Load rate (% of measured)"),
        ACCESSES,
        HUMAN_OPENS,
        CLICKS,
        HUMAN_CLICKS,
        number_column("clicked", "Clicked"),
        rate_column("click_rate", "Click rate (% of measured)"),
        LAST_ACCESS,
        UNMEASURED,
        *ANONYMOUS,
    )
    default_sort, tie_breakers = "sent_at", (("email_id", True),)
    total_in_window = True

    def statement(self, filters: Filters) -> AnySelect:
        # Rates are shares of the measured recipients the email was delivered to; the unmeasured ones
        # (their reading never recorded) are counted apart, beside the email's anonymous totals.
        delivered, measured = count_if(IS_DELIVERED), count_if(IS_MEASURED)
        opened = count_if(and_(IS_MEASURED, Recipient.first_human_at.is_not(None)))
        loaded = count_if(and_(IS_MEASURED, Recipient.access_count > 0))
        # With a likely-human click, as "opened" is with a likely-human open (rates.py: the email's page).
        clicked = count_if(and_(IS_MEASURED, Recipient.human_clicks > 0))
        return (
            select(
                Email.id.label("email_id"), Email.subject.label("subject"), User.name.label("sender"),
                Email.sent_at.label("sent_at"), func.count(Recipient.id).label("recipients"),
                delivered.label("delivered"), measured.label("measured"), opened.label("opened"),
                (opened * 100.0 / func.nullif(measured, 0)).label("open_rate"),
                loaded.label("loaded"), (loaded * 100.0 / func.nullif(measured, 0)).label("load_rate"),
                measured_sum(Recipient.access_count).label("accesses"),
                measured_sum(Recipient.human_opens).label("human_opens"),
                measured_sum(Recipient.click_count).label("clicks"),
                measured_sum(Recipient.human_clicks).label("human_clicks"),
                clicked.label("clicked"), (clicked * 100.0 / func.nullif(measured, 0)).label("click_rate"),
                func.max(Recipient.last_access).label("last_access"),
                count_if(and_(IS_DELIVERED, not_(Recipient.tracked))).label("unmeasured"),
                *anonymous_sums(Email.id, filters),
            )
            .join(Recipient, Recipient.email_id == Email.id)
            .join(User, User.id == Email.sender_id)
            .where(*email_conditions(filters), *recipient_conditions(filters))
            .group_by(Email.id, Email.subject, User.name, Email.sent_at)
        )

    def row(self, mapping: RowMapping) -> Row:
        row = super().row(mapping)
        for rate in ("open_rate", "load_rate", "click_rate"):
            if row[rate] is not None:
                row[rate] = round(float(row[rate]), 1)
        return row


class RecipientsReport(Report):
    name, title = "recipients", "Recipients"
    note = "An unmeasured recipient's reading was not recorded: their zeros say nothing of it."
    columns = (
        Column("subject", "Email"),
        Column("address", "Address"),
        Column("record_type", "Record type"),
        Column("record", "Related record"),
        Column("status", "Status", "status"),
        Column("measured", "Reading measured", "flag"),
        ACCESSES,
        HUMAN_OPENS,
        CLICKS,
        HUMAN_CLICKS,
        time_column("first_access", "First access"),
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
        return [*email_conditions(filters), *recipient_conditions(filters)]

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
                func.coalesce(person_name(Contact), Account.name, person_name(Lead)).label("record"),
                case((record_type.is_(None), null()), else_=Recipient.name).label("record_sort_name"),
                Recipient.status.label("status"), Recipient.tracked.label("measured"),
                Recipient.access_count.label("accesses"),
                Recipient.human_opens.label("human_opens"),
                Recipient.click_count.label("clicks"),
                Recipient.human_clicks.label("human_clicks"),
                Recipient.first_access.label("first_access"), Recipient.last_access.label("last_access"),
            )
            .join(Email, Email.id == Recipient.email_id)
            .outerjoin(Contact, Contact.id == Recipient.contact_id)
            .outerjoin(Account, Account.id == Recipient.account_id)
            .outerjoin(Lead, Lead.id == Recipient.lead_id)
            .where(*self._conditions(filters))
        )


class RecordsReport(Report):
    """One kind of record at a time (contacts unless ``record_type`` says otherwise), from the email
    whose reading was measured for it only: an unmeasured message's zeros say nothing of its reading."""

    name, title = "records", "Records"
    note = "Only email whose reading was measured for the record counts here."
    columns = (
        Column("record", "Record"),
        number_column("emails", "Measured emails"),
        number_column("opened", "Opened"),
        number_column("loaded", "Loaded the image"),
        ACCESSES,
        HUMAN_OPENS,
        CLICKS,
        HUMAN_CLICKS,
        LAST_ACCESS,
    )
    default_sort, tie_breakers = "accesses", (("record", False), ("record_id", False))
    total_in_window = True
    NAMES: dict[str, tuple[type[Contact] | type[Account] | type[Lead], ColumnElement[str]]] = {
        "contact": (Contact, person_name(Contact)), "account": (Account, Account.name.expression),
        "lead": (Lead, person_name(Lead)),
    }

    def check(self, filters: Filters) -> None:
        filters.record_type = filters.record_type or "contact"

    @staticmethod
    def _sent_to(record_type: str) -> Subquery:
        """(record_id, email_id, status, access_count, last_access, human_opens, first_human_at, click_count,
        human_clicks) of each measured recipient that is the record."""
        columns = (Recipient.email_id, Recipient.status, Recipient.access_count, Recipient.last_access,
                   Recipient.human_opens, Recipient.first_human_at, Recipient.click_count, Recipient.human_clicks)
        if record_type != "account":
            key = RECORD_KEYS[record_type]
            return select(key.label("record_id"), *columns).where(key.is_not(None), Recipient.tracked).subquery()
        # An account's row rolls up email sent to it and to its contacts.
        return union_all(
            select(Recipient.account_id.label("record_id"), *columns)
            .where(Recipient.account_id.is_not(None), Recipient.tracked),
            select(Contact.account_id, *columns).join(Contact, Contact.id == Recipient.contact_id)
            .where(Contact.account_id.is_not(None), Recipient.tracked),
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
            emails, opened = func.count(), count_if(sent.c.first_human_at.is_not(None))
            loaded = count_if(sent.c.access_count > 0)
        totals = (
            select(sent.c.record_id, emails.label("emails"), opened.label("opened"), loaded.label("loaded"),
                   func.coalesce(func.sum(sent.c.access_count), 0).label("accesses"),
                   func.coalesce(func.sum(sent.c.human_opens), 0).label("human_opens"),
                   func.coalesce(func.sum(sent.c.click_count), 0).label("clicks"),
                   func.coalesce(func.sum(sent.c.human_clicks), 0).label("human_clicks"),
                   func.max(sent.c.last_access).label("last_access"))
            .join(Email, Email.id == sent.c.email_id)
            .where(*email_conditions(filters), *([sent.c.status == filters.status] if filters.status else []))
            .group_by(sent.c.record_id)
        ).subquery()
        model, name = self.NAMES[filters.record_type]
        return select(
            literal(filters.record_type, String).label("record_type"), totals.c.record_id, name.label("record"),
            totals.c.emails, totals.c.opened, totals.c.loaded, totals.c.accesses, totals.c.human_opens,
            totals.c.clicks, totals.c.human_clicks, totals.c.last_access,
        ).join(model, model.id == totals.c.record_id)


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
