"""CRM records: accounts (companies), and the two kinds of person, contacts and leads, whose
shared columns are the ``Person`` mixin's; saved segments of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, false, text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow

if TYPE_CHECKING:
    from .users import User

RECORD_TYPES = ("contact", "account", "lead")


def _by_address(table: str) -> Index:
    """Records are found by address letter case aside (opt-outs and Do not track follow the address,
    at every send's batches): an index on the lower-case form, or each lookup reads the whole table."""
    return Index(f"ix_{table}_email_lower", text("lower(email)"))


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (_by_address("accounts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    website: Mapped[str] = mapped_column(String(200), default="")
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept in step with its address's opt-out (people/suppression.py), which is what sending asks.
    email_opt_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    email_opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Its crmid in the coreBOS install it was imported from (corebos/records.py): a re-run skips it.
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    contacts: Mapped[list[Contact]] = relationship(back_populates="account")

    record_type = "account"

    @property
    def display_name(self) -> str:
        return self.name


class Person:
    """The columns a contact and a lead share (each table has its own copy of them)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), index=True)
    email: Mapped[str] = mapped_column(String(254), default="", index=True)
    phone: Mapped[str] = mapped_column(String(64), default="")
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept in step with its address's opt-out (people/suppression.py), which is what sending asks.
    email_opt_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    email_opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # No tracking image (nor rewritten links) in email to them; still sent and counted as sent.
    do_not_track: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Its crmid in the coreBOS install it was imported from (corebos/records.py): a re-run skips it.
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Contact(Person, Base):
    __tablename__ = "contacts"
    __table_args__ = (_by_address("contacts"),)

    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)

    account: Mapped[Account | None] = relationship(back_populates="contacts")

    record_type = "contact"


class Lead(Person, Base):
    __tablename__ = "leads"
    __table_args__ = (_by_address("leads"),)

    company: Mapped[str] = mapped_column(String(200), default="")

    record_type = "lead"


Record = Contact | Account | Lead
RECORD_MODELS: dict[str, type[Record]] = {
    "contact": Contact,
    "account": Account,
    "lead": Lead,
}


class Segment(Base):
    """A saved, named filter over one record type (records/segments.py): its conditions are data, checked
    against a whitelist and compiled to a query each time it is used, so it always finds today's records."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    record_type: Mapped[str] = mapped_column(String(16))  # one of RECORD_TYPES
    # A JSON list of {"field", "op", "value"}: every condition must hold.
    conditions: Mapped[str] = mapped_column(Text)
    # Whoever made it may change it (and admins); None once that user is gone.  Private: only its owner sees it.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    owner: Mapped[User | None] = relationship()
