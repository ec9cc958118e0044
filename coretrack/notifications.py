"""Telling senders that their email was opened.

``tracking.counting.count_hits`` keeps each recipient's first likely-human load (``first_human_at``: not a
mail proxy, a privacy prefetch, a scanner or a provider's machine open).  Every pass of the send
worker, ``notify`` turns each one not yet told into a notification in the app for the email's
sender and, for senders who asked for it, one email per email sent (at its first such open).
The sender's own copies (addressed to the email's From or to the sender's notification address)
notify no one, nor do recipients whose reading is not measured (``recipients.tracked``: nothing of
their reading is recorded, and a first open of theirs must never reach anyone).  A recipient is
claimed with a conditional update before it is told, so several workers on one database tell each
sender once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import localtime
from .config import Config
from .db import changed_rows
from .models import ClickEvent, Email, Notification, Recipient, User, utcnow
from .sending import merge_fields
from .sending.mime import SMTP_POLICY
from .sending.smtp import DeliveryError, SmtpSender
from .settings import SettingsService

log = logging.getLogger(__name__)

# Recipients told per pass: a send to thousands opened at once is told over a few passes.
BATCH = 500


def notify(session_factory: Callable[[], Session], config: Config) -> int:
    """Notifications for the recipients opened since the last pass, and the emails their senders
    asked for; how many notifications were made."""
    made: list[int] = []
    with session_factory() as session:
        now = utcnow()
        opened = session.execute(
            select(Recipient.id, Recipient.email_id, Recipient.address, Recipient.first_human_at, Email.sender_id,
                   Email.from_address, User.notification_address)
            .join(Email, Email.id == Recipient.email_id).join(User, User.id == Email.sender_id)
            .where(Recipient.first_human_at.is_not(None), Recipient.notified_at.is_(None), Recipient.tracked)
            .order_by(Recipient.first_human_at).limit(BATCH)
        ).all()
        for row in opened:
            claimed = changed_rows(session, update(Recipient).where(Recipient.id == row.id,
                                                                    Recipient.notified_at.is_(None))
                                   .values(notified_at=now))
            if claimed != 1:
                continue  # another worker told them
            own = {address.lower() for address in (row.from_address, row.notification_address) if address}
            if row.address.lower() in own:
                continue  # the sender's own copy
            # A click sets first_human_at too (clicks.record): the first engagement is a click when one was then.
            clicked = session.scalar(select(ClickEvent.id).where(
                ClickEvent.recipient_id == row.id, ClickEvent.at == row.first_human_at,
                ClickEvent.verdict == "human").limit(1)) is not None
            session.add(Notification(user_id=row.sender_id, email_id=row.email_id, recipient_id=row.id,
                                     kind="click" if clicked else "open", at=row.first_human_at))
            made.append(row.email_id)
        session.commit()
    if made:
        email_senders(session_factory, config, set(made))
    return len(made)


def email_senders(session_factory: Callable[[], Session], config: Config, email_ids: Iterable[int]) -> int:
    """One email to each sender who asked for it, per email of theirs first opened; how many went.
    Each is claimed before it is sent: a mail server that refuses it leaves the notification in
    the app only (the failure is logged), never two emails."""
    sent = 0
    with session_factory() as session:
        settings = SettingsService(session, config)
        wanted = session.execute(
            select(Email, User).join(User, User.id == Email.sender_id)
            .where(Email.id.in_(sorted(email_ids)), Email.sender_emailed_at.is_(None), User.notify_by_email,
                   User.notification_address != "")
        ).all()
        messages = []
        from_address = settings.get("from_address")
        for email, sender in wanted:
            claimed = changed_rows(session, update(Email).where(Email.id == email.id, Email.sender_emailed_at.is_(None))
                                   .values(sender_emailed_at=utcnow()))
            if claimed == 1:
                messages.append(_message(session, settings, email, sender))
        session.commit()
        if not messages:
            return 0
        server, signer = settings.smtp_server(), settings.dkim_signer()
    try:
        with SmtpSender(server, signer) as smtp:
            for address, message in messages:
                try:
                    smtp.send(from_address, address, message.as_bytes())
                    sent += 1
                except DeliveryError as exc:
                    log.warning("could not email %s that an email was opened: %s", address, exc)
    except DeliveryError as exc:
        log.warning("could not email %d sender(s) that their email was opened: %s", len(messages), exc)
    return sent


def _message(session: Session, settings: SettingsService, email: Email, sender: User) -> tuple[str, EmailMessage]:
    first = session.execute(
        select(Recipient.address, Recipient.name, Recipient.first_human_at).where(Recipient.email_id == email.id,
                                                                                  Recipient.notified_at.is_not(None))
        .order_by(Recipient.first_human_at).limit(1)
    ).one()
    opened = session.scalar(select(func.count()).where(Recipient.email_id == email.id, Recipient.tracked,
                                                       Recipient.first_human_at.is_not(None))) or 0
    zone = localtime.zone(sender.time_zone or settings.get("time_zone"))
    when = localtime.local(first.first_human_at, zone).strftime("%Y-%m-%d %H:%M %Z")
    who = f"{first.name} <{first.address}>" if first.name else first.address
    message = EmailMessage(policy=SMTP_POLICY)
    from_address = settings.get("from_address")
    message["From"] = Address(display_name=settings.get("from_name"), addr_spec=from_address)
    message["To"] = sender.notification_address
    subject = merge_fields.readable(email.subject)  # the codes as names, not "$contacts-firstname$"
    message["Subject"] = f"Opened: {subject}"[:200]
    message["Date"] = format_datetime(localtime.local(utcnow(), zone))
    message["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or None)
    # No tracking image and no token: this mail is about the email, not a message to track.
    link = f"{settings.get('public_url').rstrip('/')}/emails/{email.id}"
    message.set_content(
        f"{who} opened your email \u201c{subject}\u201d at {when}.\n"
        + (f"{opened} measured recipients have opened it so far.\n" if opened > 1 else "")
        + f"\nIts page: {link}\n\nYou get one such email per email you send; change it on your account page.\n"
    )
    return sender.notification_address, message


# -- what the app shows ---------------------------------------------------------------------

# The notifications page shows this many, newest first.
SHOWN = 200


def latest(session: Session, user: User) -> list[Notification]:
    return list(session.scalars(select(Notification).where(Notification.user_id == user.id)
                                .order_by(Notification.id.desc()).limit(SHOWN)))


def unread_count(session: Session, user: User) -> int:
    return session.scalar(select(func.count()).where(Notification.user_id == user.id,
                                                     Notification.read_at.is_(None))) or 0


def mark_read(session: Session, user: User) -> int:
    """Every unread notification of the user read now; how many."""
    count = changed_rows(session, update(Notification).where(Notification.user_id == user.id,
                                                             Notification.read_at.is_(None)).values(read_at=utcnow()))
    session.commit()
    return count
