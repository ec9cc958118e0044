"""The records that hold an email address, and the address and name to email a record at."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.orm import Session

from ..models import Contact, Lead, Record
from ..people import suppression
from ..validation import ValidationError
from .store import get_record


def people_with_address(session: Session, address: str, exclude: Record | None = None) -> list[Contact | Lead]:
    """Contacts and leads with this address (letter case aside), but ``exclude``: a person already
    in the CRM, to warn about before another record of them is made."""
    if not address.strip():
        return []
    return [record for record in records_with_address(session, address.strip())
            if isinstance(record, Contact | Lead) and record is not exclude]


def records_with_address(session: Session, address: str) -> list[Record]:
    """Contacts, then leads, then accounts whose email is ``address`` (letter case aside)."""
    return suppression.holders(session, [address])


class RecipientFor(NamedTuple):
    address: str
    display_name: str
    record: Record

    @property
    def opted_out(self) -> bool:
        return self.record.email_opt_out


def recipient_for(session: Session, record_type: str, record_id: int) -> RecipientFor:
    """Address and name to send a record email; ValidationError keyed by ``record_type`` if it has none.

    The caller decides what to do with ``.opted_out`` records (they are not refused here).
    """
    record = get_record(session, record_type, record_id)
    if record is None:
        raise ValidationError({record_type: f"there is no {record_type} with id {record_id}"})
    if not record.email:
        raise ValidationError({record_type: f"{record.display_name} has no email address"})
    return RecipientFor(record.email, record.display_name, record)
