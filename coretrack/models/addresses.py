"""What a person decides, bound to the address: its opt-out and that opt-out's history
(people/suppression.py), and the record of each erasure (people/erasure.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class Address(Base):
    """What one email address decided, whichever contacts, accounts and leads hold it today
    (people/suppression.py): its opt-out of email, with when, from where and why.  Every send asks it;
    address_history keeps each change."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(254), unique=True)  # lower-case
    # None: email may go to it.
    opted_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    opt_out_source: Mapped[str] = mapped_column(String(32), default="", server_default="")
    opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")


class AddressEvent(Base):
    """One change of what an address decided (append-only): opted out or the opt-out lifted, from
    which source and why, and the staff user who did it."""

    __tablename__ = "address_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    event: Mapped[str] = mapped_column(String(32))  # suppression.OPTED_OUT | suppression.LIFTED
    source: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    user_name: Mapped[str] = mapped_column(String(64), default="", server_default="")  # staff actions


class Erasure(Base):
    """A person erased (people/erasure.py): who did it, when, how much went, and an HMAC of the address
    (never the address itself)."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    address_digest: Mapped[str] = mapped_column(String(64), index=True)
    records: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
