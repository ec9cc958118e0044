"""What the email pages and the API show: the filtered list (its filters are the reports', see filters.py),
per-email counts, access and click events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, not_, select
from sqlalchemy.orm import Session

from .. import localtime
from ..models import AccessEvent, AnonymousTotal, ClickEvent, Email, EmailLink, Recipient, User
from .filters import Filters
from .report import IS_DELIVERED, IS_MEASURED, measured_sum


def emails_statement(filters: Filters) -> Select[Email]:
    statement = select(Email).join(Email.sender).order_by(Email.created_at.desc(), Email.id.desc())
    if filters.date_from:
        statement = statement.where(Email.created_at >= localtime.day_start(filters.date_from, filters.time_zone))
    if filters.date_to:
        statement = statement.where(
            Email.created_at < localtime.day_start(filters.date_to + timedelta(days=1), filters.time_zone))
    if filters.sender:
        statement = statement.where(User.name == filters.sender)
    if filters.status:
        statement = statement.where(Email.status == filters.status)
    return statement


@dataclass
class EmailCounts:
    recipients: int = 0
    opened: int = 0  # recipients who likely opened it: a human load (or click), first_human_at
    accesses: int = 0  # every load of the image, proxies and scanners too
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    pending: int = 0  # not yet handed to the mail server: what a cancel stops
    loaded: int = 0  # recipients whose image was loaded at all, by anyone or anything
    human_opens: int = 0  # the likely-human loads among the accesses
    # Delivered to, their reading measured (recipients.tracked): the base of every rate.  The others'
    # reading is only the email's anonymous totals (AnonymousCounts), never part of a rate.
    measured: int = 0
    unmeasured: int = 0  # delivered to, their reading not measured
    clicks: int = 0  # clicks on the email's rewritten links, scanners' too
    human_clicks: int = 0  # the likely-human ones among them (each click event's verdict)
    # The email's anonymous totals (anonymous_totals, summed over its days): its unmeasured recipients'
    # loads of the shared image, and what deleted measurements amounted to.
    anonymous_loads: int = 0
    anonymous_human_loads: int = 0
    anonymous_clicks: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.cancelled

    def rate(self, count: int) -> int | None:
        """``count`` as a whole percentage of the measured recipients (None when there are none)."""
        return round(100 * count / self.measured) if self.measured else None


def email_counts(session: Session, email_ids: Iterable[int]) -> dict[int, EmailCounts]:
    """Recipients, recipients who opened (likely-human) and whose image loaded at all, accesses and
    likely-human opens, delivery counts, the measured and unmeasured recipients, clicks and likely-human
    clicks, per email, in one query; the anonymous totals in another."""
    ids = list(email_ids)
    counts = {email_id: EmailCounts() for email_id in ids}
    if not ids:
        return counts

    def number(condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    sent = Recipient.status == "sent"
    rows = session.execute(
        select(
            Recipient.email_id, func.count(), number(and_(IS_MEASURED, Recipient.first_human_at.is_not(None))),
            measured_sum(Recipient.access_count), number(sent),
            number(Recipient.status == "failed"), number(Recipient.status == "skipped"),
            number(Recipient.status == "cancelled"), number(Recipient.status == "pending"),
            number(and_(IS_MEASURED, Recipient.access_count > 0)), measured_sum(Recipient.human_opens),
            number(IS_MEASURED), number(and_(IS_DELIVERED, not_(Recipient.tracked))),
            measured_sum(Recipient.click_count), measured_sum(Recipient.human_clicks),
        ).where(Recipient.email_id.in_(ids)).group_by(Recipient.email_id)
    )
    for email_id, *values in rows:
        counts[email_id] = EmailCounts(*(int(value) for value in values))
    anonymous = session.execute(
        select(AnonymousTotal.email_id, func.sum(AnonymousTotal.loads), func.sum(AnonymousTotal.human_loads),
               func.sum(AnonymousTotal.clicks)).where(AnonymousTotal.email_id.in_(ids)).group_by(AnonymousTotal.email_id)
    )
    for email_id, loads, human_loads, clicks in anonymous:
        counts[email_id] = replace(counts[email_id], anonymous_loads=int(loads), anonymous_human_loads=int(human_loads),
                                   anonymous_clicks=int(clicks))
    return counts


def access_events(session: Session, email_id: int, limit: int = 200) -> list[tuple[AccessEvent, Recipient]]:
    return list(
        session.execute(
            select(AccessEvent, Recipient).join(Recipient, AccessEvent.recipient_id == Recipient.id)
            .where(Recipient.email_id == email_id)
            .order_by(AccessEvent.at.desc(), AccessEvent.id.desc()).limit(limit)
        )
    )


def click_events(session: Session, email_id: int,
                 limit: int = 200) -> list[tuple[ClickEvent, Recipient, EmailLink]]:
    """The email's latest click events, each with its recipient and link (the page shows their verdicts)."""
    return list(
        session.execute(
            select(ClickEvent, Recipient, EmailLink).join(Recipient, ClickEvent.recipient_id == Recipient.id)
            .join(EmailLink, ClickEvent.link_id == EmailLink.id)
            .where(Recipient.email_id == email_id)
            .order_by(ClickEvent.at.desc(), ClickEvent.id.desc()).limit(limit)
        )
    )


def unmeasured_emails(session: Session, recipients: ColumnElement[bool]) -> set[int]:
    """The emails in which none of the ``recipients`` (a record's: records/related.recipient_condition)
    had their reading measured: the record's page says so instead of showing their zeros as unread."""
    return set(session.scalars(select(Recipient.email_id).where(recipients).group_by(Recipient.email_id)
                               .having(func.max(case((Recipient.tracked, 1), else_=0)) == 0)))


def sender_names(session: Session) -> list[str]:
    return list(session.scalars(select(User.name).where(User.id.in_(select(Email.sender_id))).order_by(User.name)))
