"""Whose reading each message measures, decided when the message goes (claims.claim_batch), not when
the email is written: a scheduled or queued email follows the policy, the consents and the records'
Do not track as they are then.  A recipient is measured (``Recipient.tracked``) only when tracking is
on for the install and the email, the email is not a consent request, no contact or lead with the
address asks not to be tracked, and the tracking policy measures the address's consent
(people/consent.measured).  Unmeasured messages carry no personal image and no rewritten link; the
email's anonymous image only when enough of its recipients share it (``anonymous_image``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import false, func, or_, select, true, union
from sqlalchemy.orm import Session

from ..config import Config
from ..models import Contact, Email, Lead, Recipient
from ..people import consent
from ..people.suppression import key
from ..settings import SettingsService

_CHUNK = 10_000  # recipients a statement (as suppression's and consent's)


@dataclass(frozen=True)
class Measuring:
    """What decides, for one delivery of an email, which of its recipients are measured."""

    tracking: bool  # tracking on for the install and this email, and the email asks no consent
    policy: str  # the tracking_policy setting (consent.EVERYONE or consent.CONSENTED)
    anonymous_minimum: int = 10  # the setting: fewest unmeasured recipients sharing the anonymous image

    @classmethod
    def of(cls, session: Session, config: Config, email: Email) -> Measuring:
        settings = SettingsService(session, config)
        return cls(settings.tracking_enabled and email.tracking and not email.asks_consent,
                   settings.get("tracking_policy"), settings.get("anonymous_minimum"))

    def measured(self, session: Session, recipients: Sequence[tuple[int, str]]) -> set[int]:
        """The ids of ``recipients`` ((id, address) pairs, at most a chunk) whose reading is measured
        now: two queries, whatever their number."""
        if not self.tracking or not recipients:
            return set()
        consents = consent.states(session, [address for _, address in recipients])
        unwilling = _do_not_track(session, recipients)
        return {recipient_id for recipient_id, address in recipients
                if recipient_id not in unwilling and consent.measured(self.policy, consents.get(key(address), ""))}


def _do_not_track(session: Session, recipients: Sequence[tuple[int, str]]) -> set[int]:
    """The ids of ``recipients`` whose own record, or any contact or lead with their address (letter
    case aside), asks not to be tracked (accounts have no such flag)."""
    ids = [recipient_id for recipient_id, _ in recipients]
    keys = sorted({key(address) for _, address in recipients} - {""})
    flagged = {address for (address,) in session.execute(union(
        *(select(func.lower(model.email)).where(model.do_not_track == true(), func.lower(model.email).in_(keys))
          for model in (Contact, Lead))))}
    linked = set(session.scalars(
        select(Recipient.id).outerjoin(Contact, Contact.id == Recipient.contact_id)
        .outerjoin(Lead, Lead.id == Recipient.lead_id)
        .where(Recipient.id.in_(ids), or_(Contact.do_not_track == true(), Lead.do_not_track == true()))))
    return linked | {recipient_id for recipient_id, address in recipients if key(address) in flagged}


def anonymous_image(session: Session, email: Email, measuring: Measuring) -> bool:
    """Whether the email's unmeasured messages carry its anonymous image: decided when its delivery
    starts (kept as Email.anonymous_image, so every message of the email gets the same), by whether
    at least ``anonymous_minimum`` of the recipients it is still to send to are unmeasured then, the
    ones already sent unmeasured included.  A consent request and an email not tracked carry none."""
    if not measuring.tracking:
        return False
    if email.anonymous_image is None:
        minimum = measuring.anonymous_minimum
        email.anonymous_image = _unmeasured(session, email.id, measuring, minimum) >= minimum
        session.commit()
    return email.anonymous_image


def _unmeasured(session: Session, email_id: int, measuring: Measuring, enough: int) -> int:
    """How many of the email's recipients with a message (to send, or sent unmeasured) are unmeasured,
    counting no further than ``enough``."""
    count = session.scalar(select(func.count()).select_from(Recipient).where(
        Recipient.email_id == email_id, Recipient.status.in_(("sent", "sending", "failed")),
        Recipient.tracked == false())) or 0
    after = 0
    while count < enough:
        pending = [(recipient_id, address) for recipient_id, address in session.execute(
            select(Recipient.id, Recipient.address).where(
                Recipient.email_id == email_id, Recipient.status == "pending", Recipient.id > after)
            .order_by(Recipient.id).limit(_CHUNK))]
        if not pending:
            break
        count += len(pending) - len(measuring.measured(session, pending))
        after = pending[-1][0]
    return count
