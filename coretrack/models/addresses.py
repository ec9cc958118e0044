"""What a person decides, bound to the address: its opt-out and that opt-out's history
(people/suppression.py), its consent to having its reading measured with the proof of each change and
the consent texts shown (people/consent.py), and the record of each erasure (people/erasure.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, false
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
    # Why, as the suppression list groups it (people/suppression.py CATEGORIES): unsubscribed, hard
    # bounce, soft bounces, complaint, provider drop, staff, import.
    opt_out_category: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The evidence of a mailbox's or a provider's opt-out: the DSN or ARF report read from the bounce
    # mailbox, or the provider's event (each gone, and this None, when retention or an erasure removes it).
    evidence_report_id: Mapped[int | None] = mapped_column(ForeignKey("mail_reports.id", ondelete="SET NULL"))
    evidence_event_id: Mapped[int | None] = mapped_column(ForeignKey("delivery_events.id", ondelete="SET NULL"))
    # Consent to having its reading measured (people/consent.py): "" (never stated: unknown), granted,
    # refused or withdrawn, as its latest change (by time) left it; consent_history keeps every change.
    consent: Mapped[str] = mapped_column(String(16), default="", server_default="")
    consent_at: Mapped[datetime | None] = mapped_column(DateTime)


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
    category: Mapped[str] = mapped_column(String(16), default="", server_default="")  # as Address's


class ConsentText(Base):
    """One version of the text the consent page shows (people/consent.py): admins write new versions,
    none is changed or deleted, so each consent given names the words it was given to."""

    __tablename__ = "consent_texts"

    version: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user_name: Mapped[str] = mapped_column(String(64), default="", server_default="")


class ConsentEvent(Base):
    """One change of an address's consent to measuring its reading, with its proof (append-only):
    the state, when, by which means and the source or note given, and the evidence the means has:
    the consent text's version shown, the IP address (as the IP policy keeps it) and user agent, the
    email whose link carried the request, the staff user."""

    __tablename__ = "consent_history"
    __table_args__ = (Index("ix_consent_history_address_at", "address_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    state: Mapped[str] = mapped_column(String(16))  # consent.GRANTED | REFUSED | WITHDRAWN
    means: Mapped[str] = mapped_column(String(16))  # consent.PAGE | STAFF | IMPORT | API
    # A staff entry's note, or where an import's consent was collected (a sign-up form, a fair...).
    source: Mapped[str] = mapped_column(String(200), default="", server_default="")
    text_version: Mapped[int | None] = mapped_column(ForeignKey("consent_texts.version"))
    ip: Mapped[str] = mapped_column(String(45), default="", server_default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="", server_default="")
    email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id", ondelete="SET NULL"))
    user_name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # A withdrawal that also deleted what had been measured (its counts went to the anonymous totals).
    measurements_deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


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
    # An admin let email reach the address again (people/suppression_list.py): who, when and why.
    reinstated_at: Mapped[datetime | None] = mapped_column(DateTime)
    reinstated_by: Mapped[str] = mapped_column(String(64), default="", server_default="")
    reinstate_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
