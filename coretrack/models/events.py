"""What happens to sent email: loads of the image, clicks, providers' delivery reports, and how far
each front-end's hit log has been counted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, String, Text, false, true
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class AccessEvent(Base):
    __tablename__ = "access_events"
    # (at, recipient_id, hits, verdict, time_known): the Activity report sums accesses and likely-human
    # opens and counts distinct recipients by time range from it (per hour: those whose time is known).
    __table_args__ = (
        Index("ix_access_events_recipient_at", "recipient_id", "at"),
        Index("ix_access_events_at_recipient", "at", "recipient_id", "hits", "verdict", "time_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    # human | mail_proxy | privacy_prefetch | scanner, and why (tracking/verdicts.classify; "" for human).
    verdict: Mapped[str] = mapped_column(String(16), default="human")
    reason: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # One id per hit, made when the image is requested: a hit replayed from the spool after its
    # first attempt did commit (the reply was lost) is recognised and not counted again.
    hit_id: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)
    # How many loads this row stands for: 1, or more when loads past the per-minute bound of one
    # recipient were folded into it (the event table's growth is bounded, the number kept).
    hits: Mapped[int] = mapped_column(default=1, server_default="1")
    # Made by an image in email coreBOS sent (tracking/corebos_images.py): its identity is not signed.
    legacy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # False for an access imported from an old coreBOS that lost its time of day (corebos/times.py):
    # ``at`` is then the start of its day in coreBOS's zone, and no hour of it is known.
    time_known: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class ClickEvent(Base):
    __tablename__ = "click_events"
    # By recipient for its sequence rules; by time for the Activity report's buckets (covering what it sums);
    # by link for the people who clicked each one (reports/links.py, covering it).
    __table_args__ = (Index("ix_click_events_recipient_at", "recipient_id", "at"),
                      Index("ix_click_events_at_recipient", "at", "recipient_id", "hits", "verdict"),
                      Index("ix_click_events_link_recipient", "link_id", "recipient_id", "verdict"))

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    link_id: Mapped[int] = mapped_column(ForeignKey("email_links.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    # human | scanner (tracking/clicks.py, the rules above SCANNER_WINDOW), and why ("" for human)
    verdict: Mapped[str] = mapped_column(String(16), default="human")
    reason: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # How many clicks this row stands for: 1, or more when clicks past the per-minute bound of one
    # recipient were folded into it (tracking/clicks.record, as loads are: tracking/counting.fold_target).
    hits: Mapped[int] = mapped_column(default=1, server_default="1")


class DeliveryEvent(Base):
    """One event a mail provider reported (a SendGrid webhook event), kept by the provider's own
    event id so that a delivery repeated by the provider is applied once."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    # None: the event named no recipient of this install (another sender on the same account).
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime)
    # The status code and reason, or a click's URL.
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MailReport(Base):
    """A delivery status notification (RFC 3464) or complaint (ARF, RFC 5965) read from the bounce
    mailbox, kept as evidence: the raw message until the retention period ends (then emptied, its
    class and status kept: they count towards the soft-bounce rule)."""

    __tablename__ = "mail_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # dsn | arf
    # None: it named no recipient of this install.
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)  # the report's own Date
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default="")  # RFC 3463: 5.1.1; an ARF's feedback type
    bounce_class: Mapped[str] = mapped_column(String(16), default="")
    detail: Mapped[str] = mapped_column(String(500), default="")
    raw: Mapped[str] = mapped_column(Text, default="")  # "" once retention has emptied it


class HitLogPosition(Base):
    """How far one front-end's ingester has counted its Apache hit log: the file and the byte
    after its last counted line.  Written in the transaction that counts those lines, so a line
    is never counted twice nor skipped, whatever stops the ingester."""

    __tablename__ = "hit_log_positions"

    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    file: Mapped[str] = mapped_column(String(255))
    byte_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # The front-end whose ingester counts under this name (its data directory's front-end.id):
    # another front-end given the same name is refused instead of moving this one's place.
    owner: Mapped[str | None] = mapped_column(String(64), unique=True)
