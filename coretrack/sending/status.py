"""What becomes of an email once it is composed: its status from its recipients', and what a user may
do to it (cancel it, retry its failed recipients, delete it) with the one rule for who may: every
action (page, API, and the buttons that offer them) asks ``may_act``."""

from __future__ import annotations

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ScalarSelect

from ..config import Config
from ..db import MAX_ID, changed_rows
from ..models import Attachment, Email, Recipient, SendPause, User, utcnow
from .claims import STALE_AFTER, end_pending

WHO_MAY_ACT = "only administrators and the email's sender may cancel, retry or delete it"


class NotAllowed(Exception):
    """The user may not act on this email."""


class InFlight(Exception):
    """The email still has messages to hand to the mail server, or one being handed over."""


def may_act(user: User, email: Email) -> bool:
    """Admins may act on any email; staff on the ones they sent (the sender is the first to see a
    mistake, and a colleague's email is theirs to mend)."""
    return user.is_admin or email.sender_id == user.id


def _check(user: User, email: Email) -> None:
    if not may_act(user, email):
        raise NotAllowed(WHO_MAY_ACT)


def cancel_by(session: Session, user: User, email: Email) -> int:
    """The recipients not yet handed to the mail server cancelled; returns how many."""
    _check(user, email)
    return cancel_unsent(session, email.id, user.name)


def retry_by(session: Session, user: User, email: Email, recipient_id: int | None = None) -> int:
    """Failed recipients (all, or one) back to pending; returns how many."""
    _check(user, email)
    return retry_failed(session, email.id, recipient_id)


def delete_by(session: Session, config: Config, user: User, email: Email) -> None:
    """The email with its recipients, events and attachment files; InFlight while a recipient is
    pending or being sent."""
    _check(user, email)
    delete_email(session, config, email.id)


def refresh_status(session: Session, email_id: int) -> None:
    """The email's status from its recipients', in one statement so concurrent workers agree."""

    def count(*statuses: str) -> ScalarSelect[int]:
        return (
            select(func.count()).select_from(Recipient)
            .where(Recipient.email_id == email_id, Recipient.status.in_(statuses)).scalar_subquery()
        )

    status = case(
        # Paused by the guardrails (guardrails.py) while some are still to go; a batch in hand finishes.
        (and_(Email.paused_at.is_not(None), count("pending") > 0), "paused"),
        (count("pending", "sending") > 0, case((count("sent", "failed", "sending") > 0, "sending"), else_="queued")),
        (count("cancelled") > 0, "cancelled"),
        (and_(count("failed") > 0, count("sent") > 0), "partial"),
        (count("failed") > 0, "failed"),
        else_="sent",
    )
    session.execute(update(Email).where(Email.id == email_id).values(status=status),
                    execution_options={"synchronize_session": False})
    session.commit()


def retry_failed(session: Session, email_id: int, recipient_id: int | None = None) -> int:
    """Failed recipients (all, or one) back to pending; returns how many."""
    if recipient_id is not None and recipient_id > MAX_ID:
        return 0  # no such recipient (and too large for the database's integer)
    statement = update(Recipient).where(Recipient.email_id == email_id, Recipient.status == "failed")
    if recipient_id is not None:
        statement = statement.where(Recipient.id == recipient_id)
    count = changed_rows(session, statement.values(status="pending", reply="", claimed_at=None))
    session.commit()
    refresh_status(session, email_id)
    session.expire_all()
    return count


def cancel_unsent(session: Session, email_id: int, user_name: str) -> int:
    """The recipients not yet handed to the mail server become cancelled, also those a worker has
    claimed; returns how many.  A message being handed over right now still goes out (it cannot be
    called back) and is recorded as sent.  A pause of the guardrails (guardrails.py) ends with it,
    as cancelled by this user."""
    count = end_pending(session, email_id, claimed=True, status="cancelled",
                         reply=f"cancelled by {user_name} before it was sent")
    # After the recipients: nothing pending is left for a worker to claim once the pause is lifted.
    session.execute(update(SendPause).where(SendPause.email_id == email_id, SendPause.ended_at.is_(None))
                    .values(ended_at=utcnow(), ended_by=user_name, ended_as="cancelled"))
    session.execute(update(Email).where(Email.id == email_id).values(paused_at=None),
                    execution_options={"synchronize_session": False})
    session.commit()
    refresh_status(session, email_id)
    session.expire_all()
    return count


def delete_email(session: Session, config: Config, email_id: int) -> None:
    """Delete an email with its recipients, their access events and its attachments (rows and files);
    InFlight, and nothing deleted, while a recipient is pending or being sent."""
    storage_names = list(session.scalars(select(Attachment.storage_name).where(Attachment.email_id == email_id)))
    # Recipients first, except those a worker may claim or is sending: a row that turns pending
    # meanwhile (a retry) is re-checked by PostgreSQL and kept, and then the whole delete is refused.
    # A recipient cancelled after a worker claimed it stays in flight until that worker has recorded
    # its batch (and cleared the claim): it may be the message being handed over.
    cancelled_in_flight = and_(Recipient.status == "cancelled", Recipient.claimed_at >= utcnow() - STALE_AFTER)
    session.execute(
        delete(Recipient).where(Recipient.email_id == email_id, Recipient.status.not_in(("pending", "sending")),
                                or_(Recipient.claimed_at.is_(None), ~cancelled_in_flight)),
        execution_options={"synchronize_session": False},
    )
    if session.scalar(select(func.count()).select_from(Recipient).where(Recipient.email_id == email_id)):
        session.rollback()
        raise InFlight("it is still being sent: cancel it first")
    session.execute(delete(Email).where(Email.id == email_id), execution_options={"synchronize_session": False})
    session.commit()  # access events and attachment rows go with their recipient or email (ON DELETE CASCADE)
    session.expire_all()
    for name in storage_names:
        (config.attachments_dir / name).unlink(missing_ok=True)

