"""Email: an email and its recipients, links and attachments; templates and saved drafts."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, get_args

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow
from .records import Account, Contact, Lead
from .users import User

if TYPE_CHECKING:
    from .events import AccessEvent


RECIPIENT_KINDS = ("to", "cc", "bcc")


# A recipient goes pending -> sending -> sent | failed (failed -> pending on a retry); skipped
# (opted out) and cancelled (before it was sent) are final.  An email's status sums up its
# recipients' (sending.refresh_status).
RecipientStatus = Literal["pending", "sending", "sent", "failed", "skipped", "cancelled"]
EmailStatus = Literal["queued", "sending", "paused", "sent", "partial", "failed", "cancelled"]
RECIPIENT_STATUSES: tuple[RecipientStatus, ...] = get_args(RecipientStatus)
EMAIL_STATUSES: tuple[EmailStatus, ...] = get_args(EmailStatus)


class Email(Base):
    __tablename__ = "emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(998))
    html_body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text, default="")
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    from_address: Mapped[str] = mapped_column(String(254))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    reply_to: Mapped[str] = mapped_column(String(254), default="")
    # queued -> sending (<-> paused) -> sent | partial | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    tracking: Mapped[bool] = mapped_column(Boolean, default=True)
    # A request for consent to measuring (people/consent.py): each message carries its recipient's
    # consent link, and none is tracked.
    asks_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Whether its unmeasured recipients' messages carry its anonymous image (tracking/anonymous.py):
    # decided once, when its delivery starts, by whether at least ``anonymous_minimum`` of its
    # recipients are unmeasured then (None: not started).
    anonymous_image: Mapped[bool | None] = mapped_column(Boolean)
    # Sent to a list (records/search.py:Audience): its messages carry a List-Id (sending/mime.py).
    mass_send: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # Not sent before this time (a scheduled email: queued until then, cancellable until it starts).
    send_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When its sender was emailed about its first likely-human open (at most once per email).
    sender_emailed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Its activityid in the coreBOS install it was imported from (corebos/emails.py): the images' mailid.
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    # Paused by the guardrails (sending/guardrails.py): no worker claims its pending recipients until
    # an admin resumes or cancels it.
    paused_at: Mapped[datetime | None] = mapped_column(DateTime)

    sender: Mapped[User] = relationship()
    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="email", order_by="Recipient.id", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="email", order_by="Attachment.id", cascade="all, delete-orphan"
    )
    links: Mapped[list[EmailLink]] = relationship(order_by="EmailLink.position", cascade="all, delete-orphan")
    pauses: Mapped[list[SendPause]] = relationship(order_by="SendPause.id", viewonly=True)


class SendPause(Base):
    """A mass send paused by the guardrails: when, why with the figures then, and how it ended (an
    admin resumed or cancelled it: who and when), the audit of each pause."""

    __tablename__ = "send_pauses"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(String(500))
    sent: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)
    hard_bounced: Mapped[int] = mapped_column(Integer)
    complained: Mapped[int] = mapped_column(Integer)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_by: Mapped[str] = mapped_column(String(64), default="", server_default="")
    ended_as: Mapped[str] = mapped_column(String(16), default="", server_default="")  # resumed | cancelled


class StoredFile:
    """The columns of a file kept under CORETRACK_HOME/attachments (an email's or a template's)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    # The name on disk: generated, never the uploaded name.
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)


class Attachment(StoredFile, Base):
    __tablename__ = "attachments"

    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), index=True)

    email: Mapped[Email] = relationship(back_populates="attachments")


class EmailTemplate(Base):
    """A saved email to start from: subject and bodies with merge fields, and attachments."""

    __tablename__ = "email_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    subject: Mapped[str] = mapped_column(String(998))
    html_body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text, default="")
    # Who may change it (besides admins); None once that user is gone.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Sending it asks for tracking consent (Email.asks_consent), as the built-in consent request does.
    asks_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    owner: Mapped[User | None] = relationship()
    attachments: Mapped[list[TemplateAttachment]] = relationship(
        back_populates="template", cascade="all, delete-orphan", order_by="TemplateAttachment.id")


class EmailDraft(Base):
    """An email being written, saved to finish later: the compose form's fields as its owner left
    them (attachments are chosen again when it is sent)."""

    __tablename__ = "email_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(998), default="")
    # The form's fields as JSON (drafts.FIELDS): whatever was typed, valid or not yet.
    fields: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The activityid of the email coreBOS only saved, imported as this draft (corebos/emails.py).
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)


class TemplateAttachment(StoredFile, Base):
    __tablename__ = "template_attachments"

    template_id: Mapped[int] = mapped_column(ForeignKey("email_templates.id", ondelete="CASCADE"), index=True)

    template: Mapped[EmailTemplate] = relationship(back_populates="attachments")


# Reports aggregate recipients per email and per record from these indexes alone (covering: no table reads);
# ``tracked`` tells the measured recipients, the only ones a rate counts.
_STATS = ("status", "access_count", "last_access", "human_opens", "first_human_at", "click_count", "tracked",
          "human_clicks")


_TO_NOTIFY = "first_human_at IS NOT NULL AND notified_at IS NULL"
# The recipients whose message soft-bounced (delivery_reports/classes.py ESCALATING): the soft-bounce
# rule counts them by address at each soft bounce, so a partial index, empty for every other recipient.
SOFT_BOUNCED = "bounce_class IN ('mailbox_full', 'soft')"


class Recipient(Base):
    __tablename__ = "recipients"
    __table_args__ = (
        # Also what the rates read (rates.py): the delivered and bounce rates, unsubscribes and complaints.
        Index("ix_recipients_email_stats", "email_id", *_STATS, "delivery_status", "opted_out_as"),
        *(Index(f"ix_recipients_{record}_stats", f"{record}_id", "email_id", *_STATS)
          for record in ("contact", "account", "lead")),
        Index("ix_recipients_corebos_pair", "corebos_mailid", "corebos_crmid", unique=True),
        # The recipients whose sender has yet to hear of their first likely-human open: few at a time.
        Index("ix_recipients_to_notify", "first_human_at", sqlite_where=text(_TO_NOTIFY),
              postgresql_where=text(_TO_NOTIFY)),
        Index("ix_recipients_soft_bounced", text("lower(address)"), sqlite_where=text(SOFT_BOUNCED),
              postgresql_where=text(SOFT_BOUNCED)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(3), default="to")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    # Signed, random: see coretrack.tokens.  Unique so a hit finds one row by index.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # Whether this recipient's reading is measured: their message carries their tracking image (and
    # rewritten links), and only then do its loads and clicks record anything.  Decided when the
    # message goes, by the policy and the address's consent as they are then (people/consent.py).
    tracked: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # pending -> sending -> sent | failed; pending -> cancelled; skipped (opted out) never leaves.
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reply: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Every load of the image (proxies and scanners too), and the likely-human ones among them
    # (tracking/verdicts.classify): the two counts shown side by side.
    access_count: Mapped[int] = mapped_column(Integer, default=0)
    human_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_access: Mapped[datetime | None] = mapped_column(DateTime)
    last_access: Mapped[datetime | None] = mapped_column(DateTime)
    # What the receiving side said after the hand-over (deliveries.py): "" (nothing heard),
    # processed, deferred, delivered, bounced, dropped; a later, weaker event never undoes a
    # stronger one (DELIVERY_PRECEDENCE).  The detail is the status code and the server's words.
    delivery_status: Mapped[str] = mapped_column(String(16), default="", server_default="")
    delivery_detail: Mapped[str] = mapped_column(String(500), default="", server_default="")
    delivery_at: Mapped[datetime | None] = mapped_column(DateTime)
    # What this message made its person do about the address (people/suppression.py:opt_out_recipient):
    # "" (nothing), "unsubscribe" (its link, one-click, the provider's) or "complaint" (reported as spam):
    # the email's unsubscribe and complaint rates.
    opted_out_as: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The failure's class (delivery_reports/classes.py: hard, soft, mailbox_full, block, policy,
    # content, delayed), by its RFC 3463 status or the provider's classification; "" for none.
    bounce_class: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The first likely-human load of the image (tracking/counting.count_hits): the recipient opened it.
    first_human_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When the sender was told of it (notifications.py); set without telling for their own copies.
    notified_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A recipient imported from coreBOS: its (crmid, mailid) pair, which that system's images name.
    corebos_crmid: Mapped[int | None] = mapped_column(Integer)
    corebos_mailid: Mapped[int | None] = mapped_column(Integer)
    # Clicks on the email's rewritten links (tracking/clicks.py), scanners' included (each click_events
    # row has its verdict).
    click_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The likely-human ones among them (tracking/clicks.py: the events whose verdict is human, kept in step
    # when a later click revises an earlier one's verdict).
    human_clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The person was erased (people/erasure.py): the row stays for the counts, but their old image, links
    # and provider reports count and keep nothing more (tracking/counting.count_hits, tracking/clicks.record,
    # sendgrid.apply_events, bounces.apply).
    erased: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    email: Mapped[Email] = relationship(back_populates="recipients")
    contact: Mapped[Contact | None] = relationship()
    account: Mapped[Account | None] = relationship()
    lead: Mapped[Lead | None] = relationship()
    events: Mapped[list[AccessEvent]] = relationship(order_by="AccessEvent.id", viewonly=True)

    @property
    def record(self) -> Contact | Account | Lead | None:
        return self.contact or self.account or self.lead


class AnonymousTotal(Base):
    """An email's anonymous reading, one row a day: loads of its shared image, which the messages of
    recipients whose reading is not measured carry (tracking/anonymous.py), and what a person's deleted
    measurements amounted to.  No address, IP, agent or exact time: it cannot single anyone out."""

    __tablename__ = "anonymous_totals"

    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    loads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Loads whose agent and network look like a person's (tracking/verdicts.by_agent and the Apple block).
    human_loads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class EmailLink(Base):
    """One link of an email's HTML that is rewritten to the click endpoint (tracking/clicks.py), in document
    order: a click redirects to this stored URL only."""

    __tablename__ = "email_links"
    __table_args__ = (UniqueConstraint("email_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    # Clicks on it by every recipient, scanners' included, and the likely-human ones among them.
    click_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    human_clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
