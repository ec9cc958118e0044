"""The Domains report: sent email per recipient address domain (gmail.com, a customer's domain), with
the counts and rates of rates.py; the same filters as the other reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, RowMapping, func, literal_column, select

from ..models import Email, Recipient
from .filters import Filters
from .rates import RATES, counts
from .report import Column, Report, Row, email_conditions, number_column, rate_column, recipient_conditions

if TYPE_CHECKING:
    from .report import AnySelect


def address_domain() -> ColumnElement[str]:
    """The part of the address after its last "@", lower-case, in SQL that SQLite and PostgreSQL share:
    rtrim drops every character but "@" from the end, which leaves the address up to its last "@"."""
    address = Recipient.address
    # Constants written into the SQL, not bound: PostgreSQL then sees the GROUP BY expression as the selected one.
    up_to_at = func.rtrim(address, func.replace(address, literal_column("'@'"), literal_column("''")))
    return func.lower(func.substr(address, func.length(up_to_at) + 1))


_RATE = {definition.key: definition for definition in RATES}


def _rate(key: str) -> Column:
    definition = _RATE[key]
    return rate_column(key, definition.label, definition.base, definition.base_name)


class DomainsReport(Report):
    name, title = "domains", "Domains"
    note = ("Per recipient address domain. Delivered and bounce rates are shares of the messages sent; open "
            "and click rates of the measured recipients each email was delivered to; click-to-open of those "
            "who opened; unsubscribe and complaint rates of the recipients it was delivered to.")
    columns = (
        Column("domain", "Domain"),
        number_column("recipients", "Recipients"),
        number_column("sent", "Sent"),
        number_column("delivered", "Delivered"),
        _rate("delivery_rate"),
        number_column("bounced", "Bounced"),
        _rate("bounce_rate"),
        number_column("measured", "Measured delivered"),
        number_column("opened", "Opened"),
        _rate("open_rate"),
        number_column("clicked", "Clicked"),
        _rate("click_rate"),
        _rate("click_to_open"),
        number_column("unsubscribed", "Unsubscribed"),
        _rate("unsubscribe_rate"),
        number_column("complained", "Complained"),
        _rate("complaint_rate"),
    )
    default_sort, tie_breakers = "recipients", (("domain", False),)
    total_in_window = True

    def statement(self, filters: Filters) -> AnySelect:
        sums = counts(filters.all_loads)
        rates = [(sums[definition.count] * 100.0 / func.nullif(sums[definition.base], 0)).label(definition.key)
                 for definition in RATES]
        domain = address_domain()
        return (
            select(domain.label("domain"), func.count(Recipient.id).label("recipients"),
                   *(total.label(key) for key, total in sums.items()), *rates)
            .join(Email, Email.id == Recipient.email_id)
            .where(*email_conditions(filters), *recipient_conditions(filters))
            .group_by(domain)
        )

    def row(self, mapping: RowMapping) -> Row:
        row = super().row(mapping)
        for definition in RATES:
            if row[definition.key] is not None:
                row[definition.key] = round(float(row[definition.key]), 1)
        return row
