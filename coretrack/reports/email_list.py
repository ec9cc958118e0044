"""What the email pages and the API show: the filtered list (its filters are the reports', see filters.py),
per-email counts, access events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.orm import Session

from .. import localtime
from ..models import AccessEvent, Email, Recipient, User
from .filters import Filters


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

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.cancelled


def email_counts(session: Session, email_ids: Iterable[int]) -> dict[int, EmailCounts]:
    """Recipients, recipients who opened (likely-human) and whose image loaded at all, accesses and
    likely-human opens, and delivery counts, per email, in one query."""
    ids = list(email_ids)
    counts = {email_id: EmailCounts() for email_id in ids}
    if not ids:
        return counts

    def number(condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    rows = session.execute(
        select(
            Recipient.email_id, func.count(), number(Recipient.first_human_at.is_not(None)),
            func.coalesce(func.sum(Recipient.access_count), 0), number(Recipient.status == "sent"),
            number(Recipient.status == "failed"), number(Recipient.status == "skipped"),
            number(Recipient.status == "cancelled"), number(Recipient.status == "pending"),
            number(Recipient.access_count > 0), func.coalesce(func.sum(Recipient.human_opens), 0),
        ).where(Recipient.email_id.in_(ids)).group_by(Recipient.email_id)
    )
    for email_id, *values in rows:
        counts[email_id] = EmailCounts(*(int(value) for value in values))
    return counts


def access_events(session: Session, email_id: int, limit: int = 200) -> list[tuple[AccessEvent, Recipient]]:
    return list(
        session.execute(
            select(AccessEvent, Recipient).join(Recipient, AccessEvent.recipient_id == Recipient.id)
            .where(Recipient.email_id == email_id)
            .order_by(AccessEvent.at.desc(), AccessEvent.id.desc()).limit(limit)
        )
    )


def sender_names(session: Session) -> list[str]:
    return list(session.scalars(select(User.name).where(User.id.in_(select(Email.sender_id))).order_by(User.name)))
