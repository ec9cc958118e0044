"""What a user may do to an email once it is composed — cancel it, retry its failed recipients,
delete it — and the one rule for who may: every action (page, API, and the buttons that offer them)
asks ``may_act``.  The status changes themselves are sending.py's (``cancel``, ``retry``,
``delete_email``), which delivery shares."""

from __future__ import annotations

from sqlalchemy.orm import Session

from . import sending
from .config import Config
from .models import Email, User

WHO_MAY_ACT = "only administrators and the email's sender may cancel, retry or delete it"


class NotAllowed(Exception):
    """The user may not act on this email."""


def may_act(user: User, email: Email) -> bool:
    """Admins may act on any email; staff on the ones they sent (the sender is the first to see a
    mistake, and a colleague's email is theirs to mend)."""
    return user.is_admin or email.sender_id == user.id


def _check(user: User, email: Email) -> None:
    if not may_act(user, email):
        raise NotAllowed(WHO_MAY_ACT)


def cancel(session: Session, user: User, email: Email) -> int:
    """The recipients not yet handed to the mail server cancelled; returns how many."""
    _check(user, email)
    return sending.cancel(session, email.id, user.name)


def retry(session: Session, user: User, email: Email, recipient_id: int | None = None) -> int:
    """Failed recipients (all, or one) back to pending; returns how many."""
    _check(user, email)
    return sending.retry(session, email.id, recipient_id)


def delete(session: Session, config: Config, user: User, email: Email) -> None:
    """The email with its recipients, events and attachment files; sending.InFlight while a
    recipient is pending or being sent."""
    _check(user, email)
    sending.delete_email(session, config, email.id)
