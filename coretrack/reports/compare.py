"""The Compare report: two to four sent emails side by side, their counts and rates (rates.py) and
their opens day by day after each was sent, one line each on one chart.

The days are counted from each email's own sending (day 0: its first 24 hours), so that emails sent
weeks apart compare as campaigns do.  Each day is one range scan of the access events of the email's
measured recipients (ix_access_events_recipient_at), all of them in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import String, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from ..db import MAX_ID
from ..models import AccessEvent, Email, Recipient
from ..sending.merge_fields import readable
from ..validation import whole_number
from .rates import COUNTS, RATES, Rates, email_rates
from .report import Column, Row, number_column, rate_column, time_column

MIN_EMAILS, MAX_EMAILS = 2, 4
DAYS = 14  # the chart's days after sending
COLUMNS = (
    number_column("email_id", "Email id"),
    Column("subject", "Subject"),
    time_column("sent_at", "Sent at"),
    *(number_column(key, key.replace("_", " ").capitalize()) for key in COUNTS),
    *(rate_column(definition.key, definition.label, definition.base, definition.base_name) for definition in RATES),
)


class CompareError(ValueError):
    """The emails asked for cannot be compared: the message says why."""


def parse_ids(values: Sequence[str]) -> list[int]:
    """The ``email`` arguments (empty ones left out) as 2 to 4 distinct ids; CompareError otherwise."""
    ids = []
    for value in values:
        if not value.strip():
            continue
        try:
            ids.append(whole_number(value, 1, MAX_ID))
        except ValueError as exc:
            raise CompareError(f"email: {exc}") from None
    if len(set(ids)) != len(ids):
        raise CompareError("choose each email once")
    if not MIN_EMAILS <= len(ids) <= MAX_EMAILS:
        raise CompareError(f"choose {MIN_EMAILS} to {MAX_EMAILS} emails to compare ({len(ids)} chosen)")
    return ids


@dataclass
class Comparison:
    emails: list[Email]
    rates: list[Rates]
    all_loads: bool
    labels: list[str]  # the chart's days: "day 0" ...
    series: list[list[int]]  # per email, its opens on each day after sending

    def summary(self) -> list[str]:
        """What the chart shows, in words (its accessible description): each email's total and busiest day."""
        return [f"{readable(email.subject)}: {sum(series)} over these days, at most {max(series, default=0)} on one day"
                for email, series in zip(self.emails, self.series, strict=True)]

    def rows(self) -> list[Row]:
        return [{"email_id": email.id, "subject": readable(email.subject), "sent_at": email.sent_at, **rates.row()}
                for email, rates in zip(self.emails, self.rates, strict=True)]


def _opens_by_day(session: Session, emails: list[Email], all_loads: bool) -> list[list[int]]:
    loads = AccessEvent.hits if all_loads else case((AccessEvent.verdict == "human", AccessEvent.hits), else_=0)
    parts = []
    for number, email in enumerate(emails):
        measured = select(Recipient.id).where(Recipient.email_id == email.id, Recipient.tracked)
        for day in range(DAYS):
            start = (email.sent_at or email.created_at) + timedelta(days=day)  # compare() keeps sent email only
            parts.append(select(literal(f"{number}:{day}", String).label("bucket"),
                                func.coalesce(func.sum(loads), 0).label("opens"))
                         .where(AccessEvent.recipient_id.in_(measured), AccessEvent.at >= start,
                                AccessEvent.at < start + timedelta(days=1)))
    found = {row.bucket: int(row.opens) for row in session.execute(union_all(*parts))}
    return [[found.get(f"{number}:{day}", 0) for day in range(DAYS)] for number in range(len(emails))]


def compare(session: Session, ids: list[int], all_loads: bool = False) -> Comparison:
    """The emails of ``ids`` compared, in that order; CompareError for one that does not exist or was not sent."""
    emails = {email.id: email for email in session.scalars(select(Email).where(Email.id.in_(ids)))}
    for email_id in ids:
        if email_id not in emails:
            raise CompareError(f"there is no email with id {email_id}")
        if emails[email_id].sent_at is None:
            raise CompareError(f"email {email_id} has not been sent yet")
    chosen = [emails[email_id] for email_id in ids]
    rates = email_rates(session, ids, all_loads)
    return Comparison(chosen, [rates[email_id] for email_id in ids], all_loads,
                      [f"day {day}" for day in range(DAYS)], _opens_by_day(session, chosen, all_loads))


def recent_emails(session: Session, limit: int = 200) -> list[Email]:
    """The latest sent emails, for the form's choices."""
    return list(session.scalars(select(Email).where(Email.sent_at.is_not(None))
                                .order_by(Email.sent_at.desc(), Email.id.desc()).limit(limit)))
