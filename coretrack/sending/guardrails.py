"""Guardrails: a mass send watches its own hard-bounce and complaint rates while it goes out, and is
paused past the thresholds the settings name, before mailbox providers block the domain for it.

The rates are those of reports/rates.py (hard bounces of the messages handed over, complaints of the
delivered ones), judged once at least ``guardrail_minimum`` messages are delivered.  A delivery judges
its email before it claims a batch (at most every CHECK_SECONDS), so a send is paused within a minute
of crossing a threshold: no worker claims its pending recipients any more (claims.claim_batch reads
``emails.paused_at`` in the claim itself), and a batch already claimed is still sent and recorded, so
nothing handed over is lost or sent twice.  The sender is told in the app and by email with the figures;
an admin resumes the send (it is then not paused again: someone looked at the figures), or the admin or
the sender cancels its unsent recipients (status.cancel_unsent: stopping is always safe).  Each pause,
with its figures and who ended it how, is kept (send_pauses).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import Config
from ..db import changed_rows
from ..models import Email, Notification, Recipient, SendPause, User, utcnow
from ..reports.rates import counts, hard_bounced, percent
from ..settings import SettingsService
from . import merge_fields
from .mime import SMTP_POLICY
from .smtp import DeliveryError, SmtpSender
from .status import refresh_status

log = logging.getLogger(__name__)

# How often a delivery judges its email's rates again: bounces arrive after the hand-over, and a
# minute is what the pause promises.
CHECK_SECONDS = 10.0
RESUMED = "resumed"
ADMINS_ONLY = "only administrators may resume a paused send"


class NotPaused(Exception):
    """The email is not paused (now): nothing to resume."""


@dataclass(frozen=True)
class Figures:
    """An email's counts that the guardrails judge."""

    sent: int = 0
    delivered: int = 0
    hard_bounced: int = 0
    complained: int = 0

    @property
    def bounce_percent(self) -> float | None:
        return percent(self.hard_bounced, self.sent)

    @property
    def complaint_percent(self) -> float | None:
        return percent(self.complained, self.delivered)

    def text(self) -> str:
        """``3 hard bounces of 120 handed over (2.5%), 0 complaints of 117 delivered (0.0%)``."""
        bounces = f"hard bounce{'' if self.hard_bounced == 1 else 's'}"
        complaints = f"spam complaint{'' if self.complained == 1 else 's'}"
        return (f"{self.hard_bounced} {bounces} of {self.sent} handed over ({_shown(self.bounce_percent)}), "
                f"{self.complained} {complaints} of {self.delivered} delivered ({_shown(self.complaint_percent)})")


def _shown(value: float | None) -> str:
    return "–" if value is None else f"{value}%"


@dataclass(frozen=True)
class Thresholds:
    """When a mass send is paused (the Guardrails settings); a percentage of 0 never pauses."""

    bounce_percent: Decimal
    complaint_percent: Decimal
    minimum: int

    @classmethod
    def of(cls, settings: SettingsService) -> Thresholds:
        return cls(Decimal(settings.get("guardrail_bounce_percent")),
                   Decimal(settings.get("guardrail_complaint_percent")), settings.get("guardrail_minimum"))

    def exceeded(self, found: Figures) -> str | None:
        """Why a send with these figures is paused, or None while it may go on."""
        if found.delivered < self.minimum:
            return None
        # Compared exactly (100 × count ≥ percent × base), not by the rounded percentages shown.
        over = []
        if self.bounce_percent and 100 * found.hard_bounced >= self.bounce_percent * found.sent:
            over.append(f"hard bounces reached {self.bounce_percent}%")
        if self.complaint_percent and 100 * found.complained >= self.complaint_percent * found.delivered:
            over.append(f"spam complaints reached {self.complaint_percent}%")
        return f"{' and '.join(over)}: {found.text()}" if over else None


def figures(session: Session, email_ids: Iterable[int]) -> dict[int, Figures]:
    """Each email's Figures, in one query over its recipients (the rates' own counts)."""
    ids = list(email_ids)
    sums = counts(all_loads=False)
    found = dict.fromkeys(ids, Figures())
    if ids:
        statement = (select(Recipient.email_id, sums["sent"], sums["delivered"], hard_bounced(), sums["complained"])
                     .where(Recipient.email_id.in_(ids)).group_by(Recipient.email_id))
        for email_id, *numbers in session.execute(statement):
            found[email_id] = Figures(*(int(number) for number in numbers))
    return found


def judge(session: Session, config: Config, email_id: int, thresholds: Thresholds) -> bool:
    """Pause the email if it is a mass send past the thresholds (and no admin resumed it before);
    True if it is paused now, by this call or an earlier one."""
    email = session.get(Email, email_id)
    if email is None or not email.mass_send:
        return False
    session.refresh(email, ["paused_at"])  # another worker may have paused it meanwhile
    if email.paused_at is not None:
        return True
    if session.scalar(select(SendPause.id).where(SendPause.email_id == email_id, SendPause.ended_as == RESUMED)
                      .limit(1)) is not None:
        return False
    if session.scalar(select(Recipient.id).where(Recipient.email_id == email_id, Recipient.status == "pending")
                      .limit(1)) is None:
        return False  # nothing left to hold back
    found = figures(session, [email_id])[email_id]
    reason = thresholds.exceeded(found)
    session.commit()  # nothing held open while the message to the sender goes
    return reason is not None and pause(session, config, email_id, reason, found)


def pause(session: Session, config: Config, email_id: int, reason: str, found: Figures) -> bool:
    """Pause the email, keep why, and tell its sender; False if it was already paused (another worker)."""
    now = utcnow()
    if not changed_rows(session, update(Email).where(Email.id == email_id, Email.paused_at.is_(None))
                        .values(paused_at=now)):
        session.rollback()
        return False
    email = session.get_one(Email, email_id)
    session.add(SendPause(email_id=email_id, at=now, reason=reason[:500], sent=found.sent, delivered=found.delivered,
                          hard_bounced=found.hard_bounced, complained=found.complained))
    session.add(Notification(user_id=email.sender_id, email_id=email_id, recipient_id=None, kind="paused", at=now))
    session.commit()
    refresh_status(session, email_id)
    log.warning("mass send %s paused by the guardrails: %s", email_id, reason)
    _email_sender(session, config, email_id, reason)
    return True


def _email_sender(session: Session, config: Config, email_id: int, reason: str) -> None:
    """The sender told by email (to their notification address, else the address they sent from);
    a refusal is logged: the pause and the notification in the app stand."""
    email = session.get_one(Email, email_id)
    sender = session.get_one(User, email.sender_id)
    settings = SettingsService(session, config)
    to = sender.notification_address or email.from_address
    from_address = settings.get("from_address")
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = Address(display_name=settings.get("from_name"), addr_spec=from_address)
    message["To"] = to
    subject = merge_fields.readable(email.subject)
    message["Subject"] = f"Paused: {subject}"[:200]
    message["Date"] = format_datetime(utcnow().astimezone())
    message["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or None)
    link = f"{settings.get('public_url').rstrip('/')}/emails/{email.id}"
    message.set_content(
        f"Your mass send \u201c{subject}\u201d was paused: {reason}.\n\n"
        "No further messages go out until an administrator resumes or cancels it. Mailbox providers block "
        "senders whose bounce or complaint rates stay high: check the list it went to first.\n\n"
        f"Its page: {link}\n")
    server, signer = settings.smtp_server(), settings.dkim_signer()
    session.commit()
    try:
        with SmtpSender(server, signer) as smtp:
            smtp.send(from_address, to, message.as_bytes())
    except DeliveryError as exc:
        log.warning("could not email %s that mass send %s was paused: %s", to, email_id, exc)


def current(session: Session, email_id: int) -> SendPause | None:
    """The pause that holds the email now, if any."""
    return session.scalar(select(SendPause).where(SendPause.email_id == email_id, SendPause.ended_at.is_(None))
                          .order_by(SendPause.id.desc()).limit(1))


def resume(session: Session, user: User, email: Email) -> SendPause:
    """An admin lets the paused send go on: the worker claims its pending recipients again, and the
    guardrails leave it alone from now on.  Audited in its SendPause (who, when)."""
    if not user.is_admin:
        raise PermissionError(ADMINS_ONLY)
    held = current(session, email.id)
    # Only the request that clears paused_at ends the pause: two admins clicking at once, one wins.
    if held is None or not changed_rows(session, update(Email).where(Email.id == email.id,
                                                                     Email.paused_at.is_not(None))
                                        .values(paused_at=None)):
        session.rollback()
        raise NotPaused("this send is not paused")
    held.ended_at, held.ended_by, held.ended_as = utcnow(), user.name, RESUMED
    session.commit()
    refresh_status(session, email.id)
    session.expire_all()
    return held
