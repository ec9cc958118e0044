"""Erasing a person, for a data-protection request: everything coretrack keeps under their email
address goes, in one transaction, and the erasure is audited without keeping the address.

Erased: the contacts, leads and accounts with that address; its opt-out and its consent to
measuring its reading, with their histories (the consent's proof too; later email to it stays
skipped, by the digest below); the address and name on every recipient row sent to it (the rows
stay, so each email's and each report's counts stay right, under ERASED_ADDRESS, flagged
``erased``: their old image, links and provider reports record nothing more); those recipients'
access, click and provider events (times, IPs, user agents); the sender notifications about them; the
outbound webhooks' events about the address, sent or not.
Recipients not yet sent to are cancelled, and later email to the address is skipped
(sending.compose asks ``erased``; sending uses this module, never the other way, so the caller
refreshes the status of the emails whose recipients were cancelled).  The audit row keeps who,
when, how many of each, and an HMAC of the address under the install's key, so a later question "was
this address erased?" can be answered without storing it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..db import changed_rows
from ..models import AccessEvent, ClickEvent, DeliveryEvent, Erasure, MailReport, Notification, Recipient, utcnow
from ..records.addresses import records_with_address
from ..validation import clean_address
from ..webhooks import events as webhook_events
from . import suppression

ERASED_ADDRESS = "erased@erased.invalid"  # RFC 2606: .invalid never delivers
ERASED_REASON = "the recipient was erased before it was sent"
_BULK = {"synchronize_session": False}  # rows changed in the database only: the session is expired after


@dataclass(frozen=True)
class ErasureCounts:
    records: int
    recipients: int
    events: int
    # The emails that had recipients of the address: their status is the caller's to refresh
    # (sending.status.refresh_status), as some may have lost their last pending recipient.
    emails: tuple[int, ...] = field(default=(), compare=False)


def address_digest(secret: bytes, address: str) -> str:
    return hmac.new(secret, b"coretrack-erasure:" + address.strip().lower().encode(), hashlib.sha256).hexdigest()


def _recipient_ids(session: Session, address: str) -> list[int]:
    return list(session.scalars(select(Recipient.id).where(func.lower(Recipient.address) == address.lower())))


def preview(session: Session, address: str) -> ErasureCounts:
    """What erasing ``address`` would remove; ValueError for something that is not an address."""
    address = clean_address(address)
    recipient_ids = _recipient_ids(session, address)
    events = session.scalar(select(func.count()).where(AccessEvent.recipient_id.in_(recipient_ids))) or 0 \
        if recipient_ids else 0
    return ErasureCounts(len(records_with_address(session, address)), len(recipient_ids), events)


def erase(session: Session, secret: bytes, address: str, user_name: str) -> ErasureCounts:
    """Erases everything kept under ``address`` and audits it; the counts of what went."""
    address = clean_address(address)
    found = records_with_address(session, address)
    recipient_ids = _recipient_ids(session, address)
    email_ids = set(session.scalars(select(Recipient.email_id).where(Recipient.id.in_(recipient_ids)).distinct())) \
        if recipient_ids else set()
    events = 0
    for start in range(0, len(recipient_ids), 500):  # (a few hundred parameters a statement)
        chunk = recipient_ids[start:start + 500]
        # The recipients first: flagged erased, their old image, links and provider reports record
        # nothing more (each of those paths checks the flag on the row it locks); and a hit or
        # click being recorded right now holds the row, so it is committed before the events go.
        session.execute(update(Recipient).where(Recipient.id.in_(chunk), Recipient.status == "pending")
                        .values(status="cancelled", reply=ERASED_REASON), execution_options=_BULK)
        session.execute(update(Recipient).where(Recipient.id.in_(chunk))
                        .values(address=ERASED_ADDRESS, name="", contact_id=None, account_id=None, lead_id=None,
                                erased=True),
                        execution_options=_BULK)
        for kept_by_recipient in (AccessEvent, ClickEvent, DeliveryEvent, MailReport, Notification):
            gone = changed_rows(session, delete(kept_by_recipient).where(kept_by_recipient.recipient_id.in_(chunk)))
            if kept_by_recipient is AccessEvent:
                events += gone
    for record in found:
        session.delete(record)
    suppression.forget(session, address)
    webhook_events.forget(session, address)
    counts = ErasureCounts(len(found), len(recipient_ids), events, tuple(sorted(email_ids)))
    session.add(Erasure(user_name=user_name, at=utcnow(), address_digest=address_digest(secret, address),
                        records=counts.records, recipients=counts.recipients, events=counts.events))
    session.commit()
    session.expire_all()
    return counts


def was_erased(session: Session, secret: bytes, address: str) -> bool:
    return bool(erased(session, secret, [address]))


_CHUNK = 10_000


def erased(session: Session, secret: bytes, addresses: list[str]) -> set[str]:
    """Those of ``addresses`` (as given) that belong to someone erased: sending skips them, so an
    erased person's opt-out, gone with their records, does not let mail reach them again (unless an
    admin reinstated the address: people/suppression_list.py)."""
    digests = {address_digest(secret, address): address for address in addresses}
    wanted = sorted(digests)
    found: set[str] = set()
    # A mass send has many addresses; a statement takes at most 65,535 parameters on PostgreSQL, and
    # 32,766 on SQLite as built by default.
    for start in range(0, len(wanted), _CHUNK):
        found.update(session.scalars(select(Erasure.address_digest).where(
            Erasure.address_digest.in_(wanted[start:start + _CHUNK]), Erasure.reinstated_at.is_(None))))
    return {digests[digest] for digest in found}


def history(session: Session, limit: int = 50) -> list[Erasure]:
    return list(session.scalars(select(Erasure).order_by(Erasure.id.desc()).limit(limit)))
