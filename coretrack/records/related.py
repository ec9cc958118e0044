"""What a record is linked to: the emails sent to it (with their accesses summed), and what
deleting it does to the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from ..models import Contact, Email, Recipient, Record, User


@dataclass(frozen=True)
class RelatedEmail:
    email_id: int
    subject: str
    sent_at: datetime | None
    sender: str
    status: str
    access_count: int  # summed over this record's recipients of the email
    last_access: datetime | None
    human_opens: int  # the likely-human loads among them
    click_count: int  # summed likewise
    human_clicks: int  # the likely-human clicks among them


def recipient_condition(record_type: str, record_id: int) -> ColumnElement[bool]:
    """The recipients that stand for this record (an account: also those sent to its contacts)."""
    if record_type == "contact":
        return Recipient.contact_id == record_id
    if record_type == "lead":
        return Recipient.lead_id == record_id
    if record_type == "account":
        # An account's list rolls up email sent to any of its contacts.
        contact_ids = select(Contact.id).where(Contact.account_id == record_id).scalar_subquery()
        return or_(Recipient.account_id == record_id, Recipient.contact_id.in_(contact_ids))
    raise ValueError(f"unknown record type {record_type!r}")


def related_emails(session: Session, record_type: str, record_id: int) -> list[RelatedEmail]:
    """The emails sent to a record, newest first, with its recipients' accesses summed (one query)."""
    statement = (
        select(
            Email.id.label("email_id"), Email.subject, Email.sent_at, User.name.label("sender"), Email.status,
            func.coalesce(func.sum(Recipient.access_count), 0).label("access_count"),
            func.max(Recipient.last_access).label("last_access"),
            func.coalesce(func.sum(Recipient.human_opens), 0).label("human_opens"),
            func.coalesce(func.sum(Recipient.click_count), 0).label("click_count"),
            func.coalesce(func.sum(Recipient.human_clicks), 0).label("human_clicks"),
        )
        .join(Recipient, Recipient.email_id == Email.id)
        .join(User, User.id == Email.sender_id)
        .where(recipient_condition(record_type, record_id))
        .group_by(Email.id, Email.subject, Email.sent_at, User.name, Email.status, Email.created_at)
        # Unsent email has no sent_at yet: it sorts by when it was written.
        .order_by(func.coalesce(Email.sent_at, Email.created_at).desc(), Email.id.desc())
    )
    return [RelatedEmail(**row) for row in session.execute(statement).mappings()]


@dataclass(frozen=True)
class DeletionImpact:
    """What deleting a record does to the rest, for its confirmation page."""

    emails: int  # emails sent to it: they stay, their recipients no longer linked to a record
    recipients: int
    contacts: int  # an account's contacts: they stay, without an account


def deletion_impact(session: Session, record: Record) -> DeletionImpact:
    # Those addressed to this very record (an account's contacts keep theirs).
    linked = getattr(Recipient, f"{record.record_type}_id") == record.id
    emails, recipients = session.execute(
        select(func.count(func.distinct(Recipient.email_id)), func.count(Recipient.id)).where(linked)).one()
    contacts = session.scalar(select(func.count()).where(Contact.account_id == record.id)) \
        if record.record_type == "account" else 0
    return DeletionImpact(emails, recipients, contacts or 0)
